"""How GA estimators measure heads cut by the image border: their held-out HC18 images cropped so that a given share
of the head's extent lies outside the image (judges/ga/border_cut.py; the side chosen per image by a seeded
generator), the official HC and pixel size unchanged. Several estimators are scored side by side on the same cut
images; the first is the baseline of the ratio column.

    python bench/ga_border.py --estimator runs/ga_hc18 [--estimator NAME=EST ...] [--cuts 0 0.1 0.2 0.3]
    # cross-validation folds: a path with {k} is one estimator per fold, scored on its own held-out images, pooled
    python bench/ga_border.py --estimator base=CV/fold_{k}/estimator --estimator cut=CV2/fold_{k}/estimator \\
        --folds 5 --out OUT

Prints, per estimator and cut: HC abs error mean / median / 95th percentile (mm), the no-head count, the share of
contour points dropped at the border (first two stages), the HC change against the uncut image (mean |difference|,
mm) and the mean error as a ratio of the first estimator's. ``--out``: border.csv (one row per image, estimator and
cut) and border.png (mean and 95th percentile against the cut).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from sonoshift.errors import exit_on_error
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels
from sonoshift.judges.ga.border_cut import crop_to_cut
from sonoshift.judges.ga.estimator import load_ga_estimator, measure
from sonoshift.judges.ga.hc18_report import heldout_rows


def score(path: str, data: str, cuts: list[float], seed: int) -> pd.DataFrame:
    """One estimator folder's held-out images at each cut: name, cut, hc_true_mm, hc_mm, err_mm, border_fraction,
    outside_fraction (the share of the measured ellipse beyond the cut frame)."""
    est = load_ga_estimator(path)
    _, val = heldout_rows(est.segmenter, data)
    frames = [read_gray(p) for p in val["image_path"]]
    masks = [read_labels(p) > 127 for p in val["mask_path"]]
    sides = np.random.default_rng(seed).integers(0, 4, len(val))
    hc = val["hc_mm"].to_numpy()
    parts = []
    for cut in cuts:
        crops = [crop_to_cut(f, m, cut, s) if cut > 0 else f for f, m, s in zip(frames, masks, sides)]
        m = measure(est, crops, list(val["pixel_size_mm"]))
        got = m["hc_mm"].to_numpy()
        parts.append(pd.DataFrame({"name": list(val["filename"]), "cut": cut, "hc_true_mm": hc, "hc_mm": got,
                                   "err_mm": np.abs(got - hc), "border_fraction": m["border_fraction"].to_numpy(),
                                   "outside_fraction": m["outside_fraction"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per estimator and cut: mean / median / p95 error, no-head count, border share, |HC - uncut HC|."""
    uncut = rows[rows["cut"] == 0].set_index(["estimator", "fold", "name"])["hc_mm"]
    out = []
    for (est, cut), g in rows.groupby(["estimator", "cut"], sort=False):
        base = uncut.reindex(pd.MultiIndex.from_frame(g[["estimator", "fold", "name"]])).to_numpy()
        out.append({"estimator": est, "cut": cut, "n": len(g), "mean": np.nanmean(g["err_mm"]),
                    "median": np.nanmedian(g["err_mm"]), "p95": np.nanpercentile(g["err_mm"], 95),
                    "no_head": int(g["hc_mm"].isna().sum()), "border_pct": 100 * g["border_fraction"].mean(),
                    "vs_uncut": np.nanmean(np.abs(g["hc_mm"].to_numpy() - base)) if len(base) else np.nan})
    s = pd.DataFrame(out)
    first = s[s["estimator"] == s["estimator"].iloc[0]].set_index("cut")["mean"]
    s["ratio"] = s["mean"] / s["cut"].map(first)
    return s


def plot(s: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (est, g), c in zip(s.groupby("estimator", sort=False), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax.plot(100 * g["cut"], g["mean"], "o-", color=c, label=f"{est}: mean")
        ax.plot(100 * g["cut"], g["p95"], "s--", color=c, alpha=0.6, label=f"{est}: 95th percentile")
    ax.axhline(2.0, color="grey", lw=0.8, ls=":", label="2.0 mm (the uncut target)")
    ax.set_xlabel("share of the head's extent cut off by the image border (%)")
    ax.set_ylabel("HC abs error (mm)")
    ax.set_title(f"HC18 held-out heads cut by the border (n = {int(s['n'].iloc[0])} per cut)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", action="append", required=True, metavar="[NAME=]PATH",
                    help="a GA estimator folder; a path with {k} is one per fold (see --folds); repeatable")
    ap.add_argument("--folds", type=int, default=5, help="folds of a {k} path (0 .. folds - 1)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"))
    ap.add_argument("--cuts", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write border.csv and border.png here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cuts = sorted(set([0.0] + a.cuts))  # the uncut image is the reference of the HC change
    parts = []
    for item in a.estimator:
        name, _, path = item.rpartition("=")
        name = name or Path(path.replace("{k}", "K")).name
        folds = range(a.folds) if "{k}" in path else [None]
        for k in folds:
            p = path.format(k=k) if k is not None else path
            parts.append(score(p, a.data, cuts, a.seed).assign(estimator=name, fold=k if k is not None else -1))
            print(f"scored {name} {p}", flush=True)
    rows = pd.concat(parts, ignore_index=True)
    s = summary(rows)
    for r in s.itertuples():
        print(f"{r.estimator:>12} cut {r.cut:4.2f}: HC abs error mean {r.mean:5.2f} mm, median {r.median:5.2f}, "
              f"95th pct {r.p95:5.2f}; no head {r.no_head}; contour at the border {r.border_pct:4.1f} %; "
              f"|HC - uncut HC| mean {r.vs_uncut:5.2f} mm; mean x{r.ratio:.2f} of the first")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(a.out / "border.csv", index=False)
        plot(s, a.out / "border.png")
        print(f"wrote {a.out / 'border.csv'} and {a.out / 'border.png'}")


if __name__ == "__main__":
    cv2.setNumThreads(1)
    exit_on_error(main)
