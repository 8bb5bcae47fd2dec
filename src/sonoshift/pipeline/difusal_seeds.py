"""The DiFUSAL loop over several loop seeds (`make demo-full`: each seed folder runs the loop with ``seed=k``).

One loop seed draws one set of labelled patients; the sign of "DiFUSAL minus the better baseline" moved with that
draw on the simulator (docs/difusal.md, "Why loop seed 1 loses"), so the protocol's verdict rests on the mean over
loop seeds. Per seed folder the loop's ``difusal/metrics.csv`` at its last round gives each arm's score (already a
mean over the downstream training seeds); over loop seeds: mean, sample std (ddof 1), min and max per regime and
arm, and the same for DiFUSAL's gain over the better of real-only and classical augmentation (per seed, then
averaged: the better baseline may differ from seed to seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BASELINES = ("real", "classical_aug")
LOWER_IS_BETTER = {"ga_mae_days"}


def last_round(root: str | Path) -> pd.DataFrame | None:
    """The last round's rows of ``root/difusal/metrics.csv`` (None when the folder ran no loop)."""
    path = Path(root) / "difusal" / "metrics.csv"
    if not path.is_file():
        return None
    t = pd.read_csv(path)
    return t[t["round"] == t["round"].max()]


def seed_gains(t: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Per regime of one seed's last round: DiFUSAL's ``measure`` minus the better baseline's (positive = DiFUSAL
    better, also for a lower-is-better measure) and the better baseline's name."""
    rows = []
    sign = -1.0 if measure in LOWER_IS_BETTER else 1.0
    for regime, g in t.groupby("regime", sort=False):
        s = g.set_index("arm")[measure].dropna()
        base = [a for a in BASELINES if a in s.index]
        if "difusal" not in s.index or not base:
            continue
        best = max(base, key=lambda a: sign * s[a])
        rows.append({"regime": regime, "arm": "difusal - better baseline", "value": sign * (s["difusal"] - s[best]),
                     "better_baseline": best})
    return pd.DataFrame(rows)


def aggregate_loop_seeds(roots: dict[int, str | Path], measure: str = "macro_f1") -> pd.DataFrame:
    """{seed: demo folder} -> per regime and arm (and the gain row): n seeds, mean, std (ddof 1; NaN for one
    seed), min, max of ``measure`` at the last round. Empty when no folder ran the loop."""
    parts = []
    for seed, root in roots.items():
        t = last_round(root)
        if t is None or measure not in t:
            continue
        arms = t[["regime", "arm", measure]].rename(columns={measure: "value"}).dropna()
        parts += [arms.assign(seed=seed), seed_gains(t, measure).assign(seed=seed)]
    if not parts:
        return pd.DataFrame(columns=["regime", "arm", "n", "mean", "std", "min", "max"])
    long = pd.concat(parts, ignore_index=True)
    return long.groupby(["regime", "arm"], sort=False)["value"].agg(
        n="count", mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
        min="min", max="max").reset_index()


def loop_seeds_markdown(table: pd.DataFrame, measure: str = "macro_f1") -> str:
    """The aggregate as Markdown: one row per regime and arm, ``mean +- std [min, max]``; '' for an empty table."""
    if table.empty:
        return ""
    n = int(table["n"].max())
    lines = [f"DiFUSAL loop, {measure} at the last round, mean +- std [min, max] over {n} loop seeds (each seed "
             "draws its own labelled patients; 'difusal - better baseline' is computed per seed, positive = DiFUSAL "
             "better).", "", "| regime | arm | " + measure + " |", "|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.regime} | {r.arm} | {r.mean:.3f} +- {r.std:.3f} [{r.min:.3f}, {r.max:.3f}] |")
    return "\n".join(lines) + "\n"


__all__ = ["aggregate_loop_seeds", "last_round", "loop_seeds_markdown", "seed_gains"]
