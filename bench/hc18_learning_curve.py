"""Learning curve of the HC18 GA estimator: the same subject-wise k-fold cross-validation as `sonoshift ga cv-hc18`,
with every member (first stage and crop refiner) trained on a seeded, nested share of each fold's training
subjects (`Hc18Config.train_fraction`); the held-out subjects of each fold never change, so every fraction is
scored on the same images. Answers: is the HC error limited by the number of labelled images?

    python bench/hc18_learning_curve.py --out runs/hc18_curve [--fractions 0.25,0.5,0.75,1] [--folds 5] \
        [-c configs/cpu/hc18_head_ga.yaml -c configs/cpu/hc18_head_crop.yaml] [--threads 1]

Each fraction is a CV folder OUT/frac_<f> (rerun to resume; a finished `ga cv-hc18` folder of the same configs can
be linked there as frac_1.00). Prints per fraction: training images per fold, HC abs error mean / median / 95th
percentile (mm, all images pooled) and the paired mean difference to the largest fraction with a 95% bootstrap
interval; then a power law err = a n^-b fitted to the means (least squares in log-log) and its value at
``--extrapolate`` training images (default 800: four fifths of HC18's 999 training images, what a 5-fold CV of the
whole challenge set would train on). A few points and no error floor: an extrapolation, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.errors import SonoshiftError, exit_on_error
from sonoshift.metrics.bootstrap import patient_bootstrap

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = (ROOT / "configs/cpu/hc18_head_ga.yaml", ROOT / "configs/cpu/hc18_head_crop.yaml")


def power_law_fit(n: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """(a, b) of err = a n^-b, least squares on log err = log a - b log n (needs two distinct n, err > 0)."""
    n, err = np.asarray(n, float), np.asarray(err, float)
    if len(np.unique(n)) < 2 or (err <= 0).any():
        raise SonoshiftError("a power-law fit needs two or more distinct training sizes and positive errors.")
    slope, intercept = np.polyfit(np.log(n), np.log(err), 1)
    return float(np.exp(intercept)), float(-slope)


def images_for(a: float, b: float, err: float) -> float:
    """The training size n at which a n^-b equals ``err``."""
    return (a / err) ** (1.0 / b)


def curve_png(t: pd.DataFrame, fit: tuple[float, float], target: float, path: Path) -> Path:
    """Mean (with the paired interval against the largest share) and median error against training images, log-log,
    with the fitted law and the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    n = t["train_images"].to_numpy()
    ax.plot(n, t["mean"], "o-", color="tab:blue", label=f"mean HC error (CV, {t['images'].max()} images)")
    ax.plot(n, t["median"], "s--", color="tab:grey", label="median")
    grid = np.geomspace(n.min(), max(n.max(), images_for(*fit, target)) * 1.3, 50)
    ax.plot(grid, fit[0] * grid ** -fit[1], ":", color="tab:blue", label=f"fit {fit[0]:.1f} n$^{{-{fit[1]:.2f}}}$")
    ax.axhline(target, color="tab:red", lw=1, label=f"target {target:g} mm")
    ax.set_xscale("log"), ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g")), axis.set_minor_formatter(NullFormatter())
    ax.set_xticks([50, 100, 150, 200, 300, 400, 600, 800]), ax.set_yticks([1, 1.5, 2, 2.5, 3, 4])
    ax.set_xlim(grid.min() * 0.9, grid.max()), ax.set_ylim(min(1.2, t["median"].min() * 0.9), t["mean"].max() * 1.1)
    ax.set_xlabel("training images per fold"), ax.set_ylabel("HC abs error (mm)")
    ax.set_title("HC18 GA estimator: error against labelled images")
    ax.legend(fontsize=8), fig.tight_layout()
    fig.savefig(path, dpi=120), plt.close(fig)
    return path


def paired_interval(diff: np.ndarray, seed: int = 0, reps: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the mean of paired differences (images resampled with replacement)."""
    d = np.asarray(diff, float)
    ci = patient_bootstrap(d, np.arange(len(d)), n_boot=reps, seed=seed)
    return ci.low, ci.high


def train_images(cv: Path) -> float:
    """Mean over folds of the first member's training image count (its checkpoint's info)."""
    counts = []
    for f in sorted(cv.glob("fold_*/segmenter_0/segmenter.json")):
        info = json.loads(f.read_text()).get("info", {})
        if "train_images" in info:
            counts.append(info["train_images"])
    return float(np.mean(counts)) if counts else float("nan")


def curve_table(tables: dict[float, pd.DataFrame], sizes: dict[float, float]) -> pd.DataFrame:
    """Per fraction: train images, mean / median / p95 HC abs error, paired difference to the largest fraction."""
    ref_f = max(tables)
    ref = tables[ref_f].set_index("name")["hc_abs_err_mm"]
    rows = []
    for f in sorted(tables):
        e = tables[f].set_index("name")["hc_abs_err_mm"]
        common = e.index.intersection(ref.index)
        d = (e[common] - ref[common]).dropna().to_numpy()
        lo, hi = paired_interval(d) if len(d) and f != ref_f else (0.0, 0.0)
        rows.append({"fraction": f, "train_images": sizes[f], "images": int(e.notna().sum()),
                     "mean": float(e.mean()), "median": float(e.median()), "p95": float(np.nanpercentile(e, 95)),
                     "minus_largest": float(d.mean()) if len(d) else float("nan"), "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--fractions", default="0.5,0.75,1")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("-c", "--config", action="append", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hc18")
    ap.add_argument("--extrapolate", type=float, default=800.0)
    ap.add_argument("--target", type=float, default=2.0, help="mean HC error (mm) to solve the fitted law for")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    from sonoshift.config import load_config
    from sonoshift.downstream.hc18 import Hc18Config
    from sonoshift.judges.ga.hc18_cv import cross_validate

    try:
        fractions = sorted({float(x) for x in a.fractions.split(",")})
    except ValueError:
        raise SonoshiftError(f"--fractions takes comma-separated numbers in (0, 1], got {a.fractions!r}.") from None
    torch.set_num_threads(a.threads)
    base = [load_config(Hc18Config, c, [f"data_dir={a.data}"]) for c in (a.config or DEFAULT_CONFIGS)]
    tables, sizes = {}, {}
    for f in fractions:
        cv = a.out / f"frac_{f:.2f}"
        cfgs = [dataclasses.replace(c, train_fraction=f) for c in base]  # validated: (0, 1]
        cross_validate(cfgs, cv, a.folds, progress=True)
        tables[f], sizes[f] = pd.read_csv(cv / "per_image.csv"), train_images(cv)
    t = curve_table(tables, sizes)
    t.to_csv(a.out / "learning_curve.csv", index=False)
    print(f"HC18 {a.folds}-fold CV, HC abs error (mm) over {t['images'].max()} images by training share")
    for r in t.itertuples(index=False):
        print(f"fraction {r.fraction:.2f}  ~{r.train_images:.0f} training images  mean {r.mean:.3f}  median "
              f"{r.median:.3f}  p95 {r.p95:.2f}  minus largest {r.minus_largest:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]")
    if len(t) >= 2:
        a_, b_ = power_law_fit(t["train_images"], t["mean"])
        print(f"power law: mean error = {a_:.2f} n^-{b_:.3f}; at n = {a.extrapolate:.0f} training images: "
              f"{a_ * a.extrapolate ** -b_:.2f} mm; {a.target:g} mm at n = {images_for(a_, b_, a.target):.0f} "
              f"(extrapolated from {len(t)} points, no error floor)")
        print(f"figure: {curve_png(t, (a_, b_), a.target, a.out / 'learning_curve.png')}")


if __name__ == "__main__":
    exit_on_error(main)
