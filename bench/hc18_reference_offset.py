"""Where the HC18 reference ellipse and a GA estimator's ellipse sit against the skull echo, head by head.

Each ellipse is scaled about its centre by s in [0.90, 1.10]; the scale whose outline is brightest on the lightly
smoothed image finds the skull echo, and offset = 1 / s says how far outside the echo the ellipse was drawn (1.04:
4 % of its size). An estimator that follows the skull at a steady offset and a reference drawn at a varying one
give an error that tracks the reference's offset, not the estimator's: the correlation of the signed HC error with
each offset's deviation from its median (in mm) says which of the two moves where the error is.

    python bench/hc18_reference_offset.py CV/per_image.csv [--data-root ../shared/data] [--out OUT]
    # or several estimators' held-out tables pooled (e.g. the five folds of a CV):
    python bench/hc18_reference_offset.py EST/fold_0/hc18_validation.csv ... EST/fold_4/hc18_validation.csv

Prints the median offset and its median absolute deviation (MAD) for both ellipses, and both correlations (Pearson
and Spearman).
``--out``: offsets.csv (one row per head) and offsets.png (the signed error against each offset's deviation).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from sonoshift.downstream.ellipse import EllipseFit, fit_ellipse
from sonoshift.downstream.hc18 import load_hc18_table
from sonoshift.atomic import atomic_file
from sonoshift.errors import SonoshiftError, exit_on_error
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels

SCALES = np.linspace(0.90, 1.10, 81)
COLUMNS = ("name", "head_found", "hc_mm", "hc_true_mm", "cx", "cy", "a_px", "b_px", "angle")


def ring_mean(image: np.ndarray, e: EllipseFit, scale: float, n: int = 720) -> float:
    """Mean of ``image`` (bilinear; float32 is read without a copy) along the ellipse ``e`` scaled by ``scale``
    about its centre, over the points inside the image (NaN when none is)."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    c, s = math.cos(math.radians(e.angle)), math.sin(math.radians(e.angle))
    u, v = scale * e.a * np.cos(t), scale * e.b * np.sin(t)
    x, y = e.cx + u * c - v * s, e.cy + u * s + v * c
    inside = (x >= 0) & (y >= 0) & (x <= image.shape[1] - 1) & (y <= image.shape[0] - 1)
    if not inside.any():
        return math.nan
    xs, ys = x[inside].astype(np.float32)[None], y[inside].astype(np.float32)[None]
    return float(cv2.remap(np.asarray(image, np.float32), xs, ys, cv2.INTER_LINEAR).mean())


def echo_offset(image: np.ndarray, e: EllipseFit, scales: np.ndarray = SCALES, sigma: float = 1.5) -> float:
    """1 / s for the scale s in ``scales`` whose outline is brightest on ``image`` smoothed by a Gaussian of
    ``sigma`` px: > 1 where the ellipse lies outside the bright ring, < 1 inside it."""
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    profile = np.array([ring_mean(smooth, e, float(s)) for s in scales])
    return float(1.0 / scales[int(np.nanargmax(profile))])


def offsets(table: pd.DataFrame, hc18_dir: Path) -> pd.DataFrame:
    """Per head with an ellipse (and a reference outline): name, hc_true_mm, err_mm (signed), est_offset,
    ref_offset. Image and annotation paths come from ``load_hc18_table(hc18_dir)``."""
    found = table[table["head_found"].astype(bool)]
    if found.empty:
        return pd.DataFrame(columns=["name", "hc_true_mm", "err_mm", "est_offset", "ref_offset"])
    paths = load_hc18_table(hc18_dir).set_index("filename")
    unknown = sorted(set(found["name"]) - set(paths.index))
    if unknown:
        raise SonoshiftError(f"{len(unknown)} image(s) of the table are not in {hc18_dir} (first: {unknown[0]}).")
    out = []
    for _, r in found.iterrows():
        image = read_gray(paths.at[r["name"], "image_path"])
        ref = fit_ellipse(read_labels(paths.at[r["name"], "mask_path"]) > 127)
        if ref is None:
            continue
        est = EllipseFit(cx=r["cx"], cy=r["cy"], a=r["a_px"], b=r["b_px"], angle=r["angle"])
        out.append({"name": r["name"], "hc_true_mm": r["hc_true_mm"], "err_mm": r["hc_mm"] - r["hc_true_mm"],
                    "est_offset": echo_offset(image, est), "ref_offset": echo_offset(image, ref)})
    return pd.DataFrame(out)


def deviations(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each offset's deviation from its median as mm of HC, signed so that both predict the signed error: the
    estimator's (+: drawn further out lengthens its HC), the reference's (-: drawn further out shortens the error)."""
    est = (rows["est_offset"] / rows["est_offset"].median() - 1) * rows["hc_true_mm"]
    ref = -(rows["ref_offset"] / rows["ref_offset"].median() - 1) * rows["hc_true_mm"]
    return est, ref


def summary(rows: pd.DataFrame) -> dict[str, float]:
    """Median and MAD of both offsets; the correlations of the signed error with the estimator's offset deviation
    (+, mm: drawn further out than usual lengthens the HC) and with the reference's (-, mm: the reference drawn
    further out makes the estimate short)."""
    est_dev, ref_dev = deviations(rows)
    mad = {k: float((rows[k] - rows[k].median()).abs().median()) for k in ("est_offset", "ref_offset")}
    return {"heads": len(rows), "est_median": float(rows["est_offset"].median()), "est_mad": mad["est_offset"],
            "ref_median": float(rows["ref_offset"].median()), "ref_mad": mad["ref_offset"],
            "corr_est": float(np.corrcoef(rows["err_mm"], est_dev)[0, 1]),
            "corr_ref": float(np.corrcoef(rows["err_mm"], ref_dev)[0, 1]),
            "rank_est": float(rows["err_mm"].corr(est_dev, method="spearman")),
            "rank_ref": float(rows["err_mm"].corr(ref_dev, method="spearman"))}


def plot(rows: pd.DataFrame, s: dict[str, float], path: Path) -> None:
    """The signed error against each offset's deviation (``s``: ``summary(rows)``, for the correlations)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    panels = zip(axes, deviations(rows), ("estimator", "reference"), ("+", "-"), (s["corr_est"], s["corr_ref"]))
    for ax, dev, who, sign, corr in panels:
        ax.scatter(dev, rows["err_mm"], s=10, alpha=0.6)
        ax.axhline(0, color="grey", lw=0.5), ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"{who}'s offset from the skull echo (r = {corr:.2f})", fontsize=10)
        ax.set_xlabel(f"{sign}(its offset / median - 1) x true HC (mm)")
    axes[0].set_ylabel("signed HC error (mm)")
    fig.suptitle("Which ellipse moves where the HC error is: the estimator's or the reference's", fontsize=11)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def read_tables(paths: list[str]) -> pd.DataFrame:
    for p in paths:
        if not Path(p).is_file():
            raise SonoshiftError(f"No per-image table at {p}: give `ga cv-hc18`'s per_image.csv or `ga build`'s "
                                 "hc18_validation.csv.")
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SonoshiftError(f"The per-image table lacks the columns {', '.join(missing)}: it must come from "
                             "`ga cv-hc18` or `ga build` (their rows carry each ellipse).")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", help="per-image CSVs with each head's ellipse (pooled)")
    ap.add_argument("--data-root", default="../shared/data", help="folder holding hc18/training_set")
    ap.add_argument("--out", default=None, help="folder for offsets.csv and offsets.png")
    a = ap.parse_args()
    image_dir = Path(a.data_root) / "hc18" / "training_set"
    if not image_dir.is_dir():
        raise SonoshiftError(f"No HC18 images at {image_dir}: give --data-root the folder that holds hc18/.")
    rows = offsets(read_tables(a.tables), image_dir.parent)
    if len(rows) < 3:
        raise SonoshiftError(f"Only {len(rows)} head(s) in {', '.join(a.tables)} have both an ellipse and a reference "
                             "outline: the offsets need at least 3.")
    s = summary(rows)
    print(f"{s['heads']} heads; offset from the skull echo (1 / brightest scale), median [MAD]: estimator "
          f"{s['est_median']:.4f} [{s['est_mad']:.4f}], reference {s['ref_median']:.4f} [{s['ref_mad']:.4f}]")
    print(f"correlation of the signed HC error with the estimator's offset deviation {s['corr_est']:+.2f}, "
          f"with the reference's {s['corr_ref']:+.2f} (rank correlations {s['rank_est']:+.2f} / {s['rank_ref']:+.2f})")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / "offsets.csv") as f:
            rows.to_csv(f, index=False)
        plot(rows, s, out / "offsets.png")
        print(f"wrote {out / 'offsets.csv'} and {out / 'offsets.png'}")


if __name__ == "__main__":
    cv2.setNumThreads(1)
    exit_on_error(main)
