"""The demo over several training seeds (`sonoshift demo --seeds 0,1,2`, `make demo-full`): one demo folder per
seed, the same simulated data, split and frozen judges (segmenter, plane classifier: ``study.seed``), only the
translators' training seed (``study.train_seed``) and the DiFUSAL loop's seed change; then one table of mean +- spread
over the seeds (and, where the folders ran the loop, one over its loop seeds: pipeline/difusal_seeds.py).

Per seed and method: the mean over test frames of GT PSNR / SSIM / LNCC / BC (metrics.csv, reference ``gt``) and of
the frozen segmenter's Dice (segmentation.csv), and the share of the Dice gap recovered, (Dice - raw) / (ground
truth - raw). Over seeds: mean, standard deviation (ddof 1) and min / max.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.errors import SonoshiftError
from sonoshift.pipeline.difusal_seeds import aggregate_loop_seeds, loop_seeds_markdown

GT_METRICS = ("psnr", "ssim", "lncc", "bc")
LOOP_MEASURES = ("macro_f1", "ga_mae_days")


def seed_scores(root: str | Path) -> pd.DataFrame:
    """One demo folder -> one row per method: mean GT metrics, Dice, raw / ground-truth Dice and gap recovered."""
    runs = sorted(p for p in (Path(root) / "harmonized").glob("*") if (p / "metrics.csv").is_file())
    if not runs:
        raise SonoshiftError(f"{root} holds no harmonized run with metrics.csv (is it a finished demo folder?).")
    rows = []
    for run in runs:
        m = pd.read_csv(run / "metrics.csv")
        gt = m[m["reference"] == "gt"]
        row: dict[str, Any] = {"method": run.name, **{k: float(gt[k].mean()) for k in GT_METRICS}}
        seg_path = run / "segmentation.csv"
        if seg_path.is_file():
            seg = pd.read_csv(seg_path)
            for variant, col in (("harmonized", "dice"), ("source", "dice_raw"), ("ground_truth", "dice_gt")):
                row[col] = float(seg.loc[seg["variant"] == variant, "dice_mean"].mean())
            row["gap_recovered"] = (row["dice"] - row["dice_raw"]) / (row["dice_gt"] - row["dice_raw"])
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate_seeds(roots: dict[int, str | Path]) -> pd.DataFrame:
    """{seed: demo folder} -> per method and metric: n seeds, mean, std (ddof 1; NaN for one seed), min, max."""
    per_seed = pd.concat([seed_scores(r).assign(seed=s) for s, r in roots.items()], ignore_index=True)
    value_cols = [c for c in per_seed.columns if c not in ("method", "seed")]
    long = per_seed.melt(id_vars=["method", "seed"], value_vars=value_cols, var_name="metric").dropna()
    out = long.groupby(["method", "metric"], sort=False)["value"].agg(
        n="count", mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
        min="min", max="max").reset_index()
    return out


def seeds_markdown(table: pd.DataFrame) -> str:
    """The aggregate as a Markdown table: one row per method, ``mean +- std [min, max]`` per metric."""
    metrics = [m for m in (*GT_METRICS, "dice", "gap_recovered") if m in set(table["metric"])]
    n = int(table["n"].max())
    lines = [f"Mean +- std [min, max] over {n} training seeds (test frames vs simulator ground truth; Dice: frozen "
             "target segmenter).", "", "| method | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for method, g in table.groupby("method", sort=False):
        cells = []
        for m in metrics:
            r = g[g["metric"] == m]
            cells.append("" if r.empty else
                         f"{r['mean'].iloc[0]:.3f} +- {r['std'].iloc[0]:.3f} [{r['min'].iloc[0]:.3f}, {r['max'].iloc[0]:.3f}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_demo_seeds(out: str | Path, cfg: Any, seeds: tuple[int, ...], *, force: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """``run_demo`` into OUT/seed_<k> with ``study.train_seed = k`` for each seed, then OUT/seeds.csv and
    OUT/seeds.md. Returns {"seeds": {k: summary}, "table": csv path, "markdown": md path}."""
    from sonoshift.pipeline.demo import run_demo

    if len(set(seeds)) != len(seeds) or not seeds:
        raise SonoshiftError(f"--seeds needs distinct seeds, got {list(seeds)}.")
    root = Path(out)
    summaries = {}
    for k in seeds:
        # the seed equal to study.seed is the plain demo (train_seed None trains with study.seed): same stage keys
        train_seed = None if int(k) == cfg.study.seed else int(k)
        seeded = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, train_seed=train_seed))
        # the DiFUSAL loop does not depend on the translators: each folder runs it with another loop seed instead
        seeded = dataclasses.replace(seeded, difusal=dataclasses.replace(
            cfg.difusal, overrides=(*cfg.difusal.overrides, f"seed={int(k)}")))
        # the data, the target segmenter and the plane judge are made once, in the first seed's folder
        first = root / f"seed_{seeds[0]}"
        summaries[k] = run_demo(root / f"seed_{k}", seeded, force=force, progress=progress,
                                shared=None if k == seeds[0] else first)
    folders = {k: root / f"seed_{k}" for k in seeds}
    table = aggregate_seeds(folders)
    # the loop's two declared headline measures: plane macro-F1 and GA MAE (days)
    loops = {m: aggregate_loop_seeds(folders, m) for m in LOOP_MEASURES}
    atomic_write_text(root / "seeds.csv", table.to_csv(index=False, lineterminator="\n"))
    found = [t.assign(measure=m) for m, t in loops.items() if not t.empty]
    if found:
        atomic_write_text(root / "difusal_seeds.csv", pd.concat(found).to_csv(index=False, lineterminator="\n"))
    parts = [seeds_markdown(table)] + [loop_seeds_markdown(t, m) for m, t in loops.items()]
    atomic_write_text(root / "seeds.md", "\n".join(filter(None, parts)))
    return {"seeds": summaries, "table": str(root / "seeds.csv"), "markdown": str(root / "seeds.md")}
