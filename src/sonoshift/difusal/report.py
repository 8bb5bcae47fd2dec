"""RUN/report.html, verdict first: the declared headline (macro-F1, GA MAE) of every arm at the last round,
then per-round curves per arm (PNG), accepted / rejected counts by reason, contact sheets of accepted and
rejected candidates, and the memorization check (near-copy rate of the generator after every fine-tuning)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sonoshift.atomic import atomic_write_text  # noqa: E402
from sonoshift.config import from_dict, read_yaml  # noqa: E402
from sonoshift.difusal.config import DifusalConfig  # noqa: E402
from sonoshift.difusal.rounds import regime_name, stage_dir  # noqa: E402
from sonoshift.difusal.selection import REASONS  # noqa: E402
from sonoshift.difusal.test_variants import VARIANTS, predictions_file  # noqa: E402
from sonoshift.errors import SonoshiftError  # noqa: E402

TARGET_BETTER_BASELINE, TARGET_UNFILTERED = 0.05, 0.02  # issue 16: macro-F1 gains of the DiFUSAL arm (defaults)
MEASURE_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy", "ga_mae_days": "GA MAE (days)"}


def verdict(table: pd.DataFrame, rounds: int, measure: str = "macro_f1", target: float = TARGET_BETTER_BASELINE,
            target_unfiltered: float = TARGET_UNFILTERED) -> list[str]:
    """One sentence per label regime comparing the DiFUSAL arm at the last round with the baselines on
    ``measure`` (the config's first headline measure); with scores under a test variant in the table
    (harmonized test, adapted BN: test_variants.py), also the best declared arm (raw or under a variant) against
    the better of real-only and classical augmentation (raw)."""
    if measure == "ga_mae_days":
        return ga_verdict(table, rounds, target)
    out = []
    last = table[table["round"] == rounds]
    name = MEASURE_NAMES[measure]
    for regime, t in last.groupby("regime", sort=False):
        s = t.set_index("arm")
        if "difusal" not in s.index:
            continue
        d = s.loc["difusal"]
        base = max(s.loc[a, measure] for a in ("real", "classical_aug") if a in s.index)
        msg = (f"{regime}: DiFUSAL {name} {d[measure]:.3f} vs the better of real-only / classical augmentation "
               f"{base:.3f} ({100 * (d[measure] - base):+.1f} points; target +{100 * target:.0f}: "
               f"{'met' if d[measure] - base >= target else 'NOT met'})")
        if "unfiltered" in s.index:
            u = s.loc["unfiltered", measure]
            msg += (f"; vs unfiltered {u:.3f} ({100 * (d[measure] - u):+.1f}; target +{100 * target_unfiltered:.0f}: "
                    f"{'met' if d[measure] - u >= target_unfiltered else 'NOT met'})")
        if "uniform" in s.index:
            u = s.loc["uniform", measure]
            msg += f"; vs uniform allocation {u:.3f} ({100 * (d[measure] - u):+.1f})"
        scores = {a: float(s.loc[a, measure]) for a in s.index}
        for v in VARIANTS:
            col = f"{v.key}_{measure}"
            if col in s.columns:
                scores.update({a + v.suffix: float(s.loc[a, col]) for a in s.index if np.isfinite(s.loc[a, col])})
        if len(scores) > len(s.index):
            best = max(scores, key=scores.get)
            msg += (f"; best declared arm: {best} {scores[best]:.3f} ({100 * (scores[best] - base):+.1f} points over "
                    f"the better baseline; target +{100 * target:.0f}: "
                    f"{'met' if scores[best] - base >= target else 'NOT met'})")
        if "real" in s.index and np.isfinite(d["ga_mae_days"]):
            r = s.loc["real", "ga_mae_days"]
            msg += (f"; GA MAE {d['ga_mae_days']:.1f} d vs real-only {r:.1f} d "
                    f"({'lower' if d['ga_mae_days'] < r else 'NOT lower'}).")
        out.append(msg)
    return out


def ga_verdict(table: pd.DataFrame, rounds: int, target_days: float = 0.0) -> list[str]:
    """One sentence per label regime on GA MAE (days, lower is better; the GA-only study): the DiFUSAL arm at the
    last round against the better (lower) of real-only and classical augmentation, and against unfiltered."""
    out = []
    want = "lower" if target_days <= 0 else f"at least {target_days:.1f} d lower"
    for regime, t in table[table["round"] == rounds].groupby("regime", sort=False):
        s = t.set_index("arm")["ga_mae_days"]
        if "difusal" not in s.index or not np.isfinite(s["difusal"]):
            continue
        d = float(s["difusal"])
        base = min(float(s[a]) for a in ("real", "classical_aug") if a in s.index)
        msg = (f"{regime}: DiFUSAL GA MAE {d:.1f} d vs the better of real-only / classical augmentation {base:.1f} d "
               f"({d - base:+.1f} d; target: {want}: {'met' if base - d > target_days else 'NOT met'})")
        if "unfiltered" in s.index:
            u = float(s["unfiltered"])
            msg += f"; vs unfiltered {u:.1f} d ({d - u:+.1f} d: {'lower' if d < u else 'NOT lower'})"
        if "uniform" in s.index:
            msg += f"; vs uniform allocation {float(s['uniform']):.1f} d ({d - float(s['uniform']):+.1f} d)"
        out.append(msg + ".")
    return out


def headline_measure(cfg: DifusalConfig) -> str:
    """The measure the verdict compares: the config's first headline measure."""
    return cfg.headline[0] if cfg.headline else "macro_f1"


def config_verdict(cfg: DifusalConfig, table: pd.DataFrame) -> list[str]:
    """:func:`verdict` on the config's first headline measure and its declared targets."""
    measure = headline_measure(cfg)
    target = cfg.target_ga_days if measure == "ga_mae_days" else cfg.target_gain
    return verdict(table, cfg.loop.rounds, measure, target, cfg.target_unfiltered)


def curves_png(table: pd.DataFrame, regime: str, path: Path, measure: str = "macro_f1") -> None:
    """Accuracy, macro-F1 and GA MAE against the round, one line per arm (``measure`` is marked the headline);
    without any GA score but with scores under a test variant, the third panel is the first variant's accuracy;
    a GA-only study (headline GA MAE, one plane: accuracy and macro-F1 are 1 by construction) has the GA panel only."""
    t = table[table["regime"] == regime]
    third = ("ga_mae_days", "GA MAE, days (lower = better)")
    for v in VARIANTS if not t["ga_mae_days"].notna().any() else ():
        if f"{v.key}_accuracy" in t and t[f"{v.key}_accuracy"].notna().any():
            third = (f"{v.key}_accuracy", f"accuracy, {v.label}")
            break
    panels = [("accuracy", "accuracy"), ("macro_f1", "macro-F1"), third]
    if measure == "ga_mae_days" and t["macro_f1"].nunique(dropna=True) <= 1:
        panels = [third]
    panels = [(c, n + (" (headline)" if c == measure else "")) for c, n in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 4.4 * len(panels)), 3.6), squeeze=False)
    axes = axes[0]
    for ax, (col, name) in zip(axes, panels):
        for arm, g in t.groupby("arm", sort=False):
            g = g.sort_values("round")
            ax.plot(g["round"], g[col], marker="o", label=arm)
        ax.set_title(f"{regime}: {name}")
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def reasons_png(table: pd.DataFrame, regime: str, path: Path) -> None:
    """Stacked bars: accepted and rejected-by-reason counts per round for each loop arm."""
    t = table[(table["regime"] == regime) & table["n_candidates"].notna() & table["rejected_too_easy"].notna()]
    labels = [f"{a}\nr{int(k)}" for a, k in zip(t["arm"], t["round"])]
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(t) + 2), 3.6))
    bottom = np.zeros(len(t))
    for col, name in [("n_accepted", "accepted")] + [(f"rejected_{r}", r) for r in REASONS]:
        v = t[col].to_numpy(float)
        ax.bar(labels, v, bottom=bottom, label=name)
        bottom += v
    ax.set_ylabel("candidates")
    ax.set_title(f"{regime}: accepted / rejected by reason")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet_png(folder: Path, planes: tuple[str, ...], accepted: bool, path: Path, per_plane: int = 8) -> bool:
    """Up to ``per_plane`` accepted (or rejected) candidates of one round per plane, titled with GA / reason;
    image-guided rounds (starts.npz) show each candidate right of the unlabelled image it started from. False
    (nothing written) when the round has none."""
    if not (folder / "scores.csv").is_file():
        return False
    s = pd.read_csv(folder / "scores.csv")
    imgs = np.load(folder / "candidates.npz")["images"]
    if (folder / "starts.npz").is_file():
        starts = np.load(folder / "starts.npz")["images"]
        gap = np.full((imgs.shape[1], 2), 255, dtype=imgs.dtype)
        imgs = np.stack([np.concatenate([a, gap, b], axis=1) for a, b in zip(starts, imgs)])
    s = s[s["accepted"] == accepted]
    if s.empty:
        return False
    wide = imgs.shape[2] / imgs.shape[1]
    planes = tuple(p for p in planes if (s["plane"] == p).any())  # a plane with no candidate gets no empty row
    fig, axes = plt.subplots(len(planes), per_plane, figsize=(1.3 * wide * per_plane, 1.5 * len(planes)),
                             squeeze=False)
    for i, p in enumerate(planes):
        rows = s[s["plane"] == p].head(per_plane)
        for j in range(per_plane):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(rows):
                r = rows.iloc[j]
                ax.imshow(imgs[int(r["candidate"])], cmap="gray", vmin=0, vmax=255)
                ga = f" {r['ga_weeks']:.0f}w" if np.isfinite(r["ga_weeks"]) else ""  # no GA label: null GA token
                ax.set_title(f"{p}{ga}" + ("" if accepted else f"\n{r['reason']}"), fontsize=6)
    fig.suptitle(("accepted" if accepted else "rejected") + f" candidates, {folder.parent.name} {folder.name}"
                 + (" (left: the unlabelled image it started from)" if wide > 1 else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def interval_tables(run: Path, cfg: DifusalConfig, regime: str, k: int, n_boot: int = 1000
                    ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """At round ``k``: every arm's macro-F1 and GA MAE with 95% patient-cluster bootstrap intervals, and the
    paired differences DiFUSAL - arm (same resamples); None when a stage has no saved test predictions."""
    from sonoshift.difusal.arms import ARMS
    from sonoshift.difusal.intervals import accuracy_on, bootstrap, interval, load_predictions, measures, resamples
    from sonoshift.difusal.rounds import PREDICTIONS

    preds = {}
    for a in cfg.arms:
        f = stage_dir(run, regime, a, k if ARMS[a].per_round else 0) / PREDICTIONS
        if not f.is_file():
            return None
        preds[a] = load_predictions(f)
    for v in VARIANTS:  # the same test patients: frames harmonized, or the classifier re-normalized
        for a in cfg.arms:
            f = stage_dir(run, regime, a, k if ARMS[a].per_round else 0) / predictions_file(v.key)
            if f.is_file():
                preds[a + v.suffix] = load_predictions(f)
    n = len(cfg.data.planes)
    sets = resamples(next(iter(preds.values()))["patients"], n_boot, seed=cfg.seed)
    boots = {a: bootstrap(p, sets, n) for a, p in preds.items()}
    rows = []
    for a, p in preds.items():
        f1, mae = measures(p, np.arange(len(p["y"])), n)
        (fl, fh), (ml, mh), (al, ah) = (interval(boots[a][:, j]) for j in range(3))
        rows.append({"arm": a, "accuracy": accuracy_on(p, np.arange(len(p["y"]))), "accuracy 95% CI":
                     f"{al:.3f} - {ah:.3f}", "macro_f1": f1, "macro_f1 95% CI": f"{fl:.3f} - {fh:.3f}",
                     "ga_mae_days": mae, "GA MAE 95% CI": f"{ml:.1f} - {mh:.1f}"})
    diffs = []
    if "difusal" in preds:
        for a in preds:
            if a == "difusal":
                continue
            d = boots["difusal"] - boots[a]
            (fl, fh), (ml, mh), (al, ah) = (interval(d[:, j]) for j in range(3))
            diffs.append({"DiFUSAL minus": a, "macro-F1 points": 100 * _finite_mean(d[:, 0]),
                          "95% CI (points)": f"{100 * fl:+.1f} .. {100 * fh:+.1f}",
                          "P(DiFUSAL better)": float(np.mean(d[:, 0] > 0)),
                          "accuracy points": 100 * _finite_mean(d[:, 2]),
                          "accuracy 95% CI": f"{100 * al:+.1f} .. {100 * ah:+.1f}",
                          "GA MAE days": _finite_mean(d[:, 1]), "GA 95% CI": f"{ml:+.1f} .. {mh:+.1f}"})
    return pd.DataFrame(rows), pd.DataFrame(diffs)


def _finite_mean(v: np.ndarray) -> float:
    """Mean of the finite values (NaN, silently, when there are none: no GA on the test frames)."""
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", border=0)


def _setup_value(run: Path, regime: str, key: str) -> str:
    v = json.loads((stage_dir(run, regime, "setup", 0) / "setup.json").read_text()).get(key)
    return "-" if v is None else f"{v:.3f}"


def write_report(run: str | Path) -> Path:
    """RUN/report.html (+ PNGs under RUN/report/) from RUN/metrics.csv and the round folders."""
    run = Path(run)
    if not (run / "metrics.csv").is_file():
        raise SonoshiftError(f"{run} has no metrics.csv: run `sonoshift difusal` into it first.")
    cfg = from_dict(DifusalConfig, read_yaml(run / "config.yaml"))
    table = pd.read_csv(run / "metrics.csv")
    for col in ("n_candidates", "n_accepted", "n_synthetic") + tuple(f"rejected_{r}" for r in REASONS):
        if col in table:
            table[col] = table[col].astype("Int64")
    for col in ["n_candidates", "n_accepted", "near_copy_rate_after_finetune", "fid_candidates", "kid_candidates",
                "fid_accepted", "kid_accepted"] + [f"rejected_{r}" for r in REASONS]:
        if col not in table:
            table[col] = np.nan
    figs = run / "report"
    figs.mkdir(exist_ok=True)
    R = cfg.loop.rounds
    parts = ["<h1>DiFUSAL: self-improving synthesis loop</h1>", "<h2>Verdict</h2><ul>"]
    measure = headline_measure(cfg)
    parts += [f"<li>{html.escape(v)}</li>" for v in config_verdict(cfg, table)] or ["<li>no finished round yet</li>"]
    for frac in cfg.label_fractions:
        rg = regime_name(frac)
        tabs = interval_tables(run, cfg, rg, R) if rg in set(table["regime"]) else None
        if tabs is not None and len(tabs[1]):
            col, ci = {"accuracy": ("accuracy points", "accuracy 95% CI"),
                       "ga_mae_days": ("GA MAE days", "GA 95% CI")}.get(measure, ("macro-F1 points", "95% CI (points)"))
            unit = "days" if measure == "ga_mae_days" else "points"
            sig = [f"{r['DiFUSAL minus']} {r[col]:+.1f} ({r[ci]})" for _, r in tabs[1].iterrows()]
            parts.append(f"<li>{rg}, {MEASURE_NAMES[measure]}: {unit} DiFUSAL minus each arm with 95% paired intervals over test "
                         f"patients: {html.escape('; '.join(sig))}. An interval that contains 0 is no evidence "
                         "either way. These intervals cover the test sample only, not the training seed of the downstream "
                         f"models (small nets, {cfg.downstream.steps} steps: their seed alone moves macro-F1 by several points).</li>")
    parts.append("</ul>")
    head = table[table["round"] == table["round"].max()][
        ["regime", "arm", "round", "macro_f1", "accuracy", "ga_mae_days", "n_synthetic"]
        + [f"{v.key}_{m}" for v in VARIANTS for m in ("accuracy", "macro_f1") if f"{v.key}_{m}" in table.columns]]
    parts += [f"<h2>Headline (declared: {', '.join(cfg.headline)}), last finished round; first row of each regime "
              "is the trivial baseline (real only)</h2>", _table_html(head)]
    for frac in cfg.label_fractions:
        rg = regime_name(frac)
        if rg not in set(table["regime"]):
            continue
        curves_png(table, rg, figs / f"{rg}_curves.png", measure)
        reasons_png(table, rg, figs / f"{rg}_reasons.png")
        parts.append(f"<h2>{rg} ({100 * frac:.0f}% of the training labels)</h2>")
        k_last = int(table[table["regime"] == rg]["round"].max())
        tabs = interval_tables(run, cfg, rg, k_last)
        if tabs is not None:
            parts += [f"<h3>Round {k_last}: headline with 95% intervals (bootstrap over test patients, "
                      "paired across arms)</h3>", _table_html(tabs[0]), _table_html(tabs[1])]
        parts.append(f'<img src="report/{rg}_curves.png"><br><img src="report/{rg}_reasons.png">')
        fid = table[(table["regime"] == rg) & table["fid_candidates"].notna()][
            ["arm", "round", "n_candidates", "n_accepted", "fid_candidates", "fid_accepted", "kid_candidates",
             "kid_accepted"]]
        if len(fid):
            parts += ["<h3>Fidelity of each round's candidates and accepted set</h3>",
                      "<p>FID / KID against the regime's real training frames in the frozen critic classifier's "
                      "embedding (no ImageNet network offline, so no Inception FID and no LPIPS); real validation "
                      f"frames (patients the generator never saw) score FID {_setup_value(run, rg, 'fid_real_val')} / KID "
                      f"{_setup_value(run, rg, 'kid_real_val')}: candidates far below that are close to the few "
                      "training patients, not better than real. Lower = closer to the training frames.</p>",
                      _table_html(fid)]
        last = max((k for k in range(1, R + 1) if (stage_dir(run, rg, "difusal", k) / "scores.csv").is_file()),
                   default=None)
        if last is not None:
            f = stage_dir(run, rg, "difusal", last)
            if cfg.loop.init_strength > 0:
                parts.append(f"<p>Candidates are image-guided: each starts from an image of the generator's "
                             f"unlabelled pool (labels never read), noised to strength {cfg.loop.init_strength:g} "
                             f"and denoised under its plane and GA"
                             + (", the start matched to the plane by the frozen critic" if cfg.loop.init_match
                                else "") + "; the sheets show each start left of its candidate.</p>")
            for acc, name in ((True, "accepted"), (False, "rejected")):
                if contact_sheet_png(f, tuple(cfg.data.planes), acc, figs / f"{rg}_{name}.png"):
                    parts.append(f'<h3>{name} (DiFUSAL round {last})</h3><img src="report/{rg}_{name}.png">')
                else:
                    parts.append(f"<h3>{name} (DiFUSAL round {last})</h3><p>no {name} candidate in this round.</p>")
        setup = json.loads((stage_dir(run, rg, "setup", 0) / "setup.json").read_text())
        memo = table[(table["regime"] == rg) & table["near_copy_rate_after_finetune"].notna()][
            ["arm", "round", "near_copy_rate_after_finetune", "rejected_near_copy"]]
        parts += ["<h3>Memorization check</h3>",
                  f"<p>near-copy threshold {setup['memo_threshold']:.4f} (sonoshift.synth's CopyGuard: "
                  f"shift-tolerant pixel distance at 32 px; percentile {cfg.critics.memo_percentile:g} of every "
                  f"real training frame's nearest distance to frames of other patients, or other videos when the "
                  f"regime holds one patient); near-copy rate of fresh samples of the pretrained generator: "
                  f"{setup['near_copy_rate_generator']:.3f}; after each fine-tuning (fresh samples), and candidates "
                  f"rejected as near-copies:</p>",
                  _table_html(memo)]
    if (run / "stage_seconds.csv").is_file():
        sec = pd.read_csv(run / "stage_seconds.csv").drop_duplicates(["regime", "arm", "round"], keep="last")
        parts += [f"<h2>Stage seconds</h2><p>{sec['seconds'].sum():.0f} s wall, {sec['cpu_seconds'].sum():.0f} s "
                  f"CPU over {len(sec)} stages (this process; shared machines stretch the wall time).</p>",
                  _table_html(sec)]
    parts += ["<h2>All rounds</h2>", _table_html(table)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>DiFUSAL report</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1300px} table{border-collapse:collapse;font-size:12px}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd} img{max-width:100%}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    atomic_write_text(run / "report.html", page)
    return run / "report.html"


__all__ = ["config_verdict", "contact_sheet_png", "curves_png", "reasons_png", "verdict", "write_report"]
