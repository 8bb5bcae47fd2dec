"""Does a size-dependent HC calibration help? Cross-fitted on the out-of-fold HCs of a `ga cv-hc18` folder: for
each fold, every calibration is fitted on the other folds' (measured, official) HC pairs only and applied to the
fold, so no image's own truth enters its calibration.

    python bench/ga_calibration_cv.py runs/ga_cv5/per_image.csv

Prints HC abs error mean / median / 95th percentile (mm, pooled) and the per-fold means for: none, a constant
shift (median residual), a ratio (median official / measured), a least-squares line, the same line fitted
without residuals beyond 3 robust sigma, and a median shift per measured-HC band (< 110, 110-250, >= 250 mm).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

BANDS = (0.0, 110.0, 250.0, np.inf)


def calibrate(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, kind: str) -> np.ndarray:
    """Fit calibration ``kind`` on measured ``xtr`` -> official ``ytr``; return it applied to ``xte``."""
    r = ytr - xtr
    if kind == "none":
        return xte
    if kind == "shift":
        return xte + np.median(r)
    if kind == "ratio":
        return xte * np.median(ytr / xtr)
    if kind in ("line", "robust line"):
        keep = np.ones(len(r), bool)
        if kind == "robust line":
            mad = 1.4826 * np.median(np.abs(r - np.median(r)))
            keep = np.abs(r - np.median(r)) <= 3 * mad
        b, a = np.polyfit(xtr[keep], ytr[keep], 1)
        return a + b * xte
    if kind == "band shift":
        out = xte.copy()
        for lo, hi in zip(BANDS[:-1], BANDS[1:]):
            tr, te = (xtr >= lo) & (xtr < hi), (xte >= lo) & (xte < hi)
            out[te] += np.median(r[tr]) if tr.any() else 0.0
        return out
    raise ValueError(kind)


def cross_fitted(x: np.ndarray, y: np.ndarray, fold: np.ndarray, kind: str) -> np.ndarray:
    out = np.empty_like(x)
    for k in np.unique(fold):
        te = fold == k
        out[te] = calibrate(x[~te], y[~te], x[te], kind)
    return out


def main() -> None:
    t = pd.read_csv(sys.argv[1])
    t = t[t["head_found"].astype(bool)]
    x, y, f = t["hc_mm"].to_numpy(), t["hc_true_mm"].to_numpy(), t["fold"].to_numpy()
    print(f"{len(t)} out-of-fold HCs, {len(np.unique(f))} folds; calibration cross-fitted per fold")
    for kind in ("none", "shift", "ratio", "line", "robust line", "band shift"):
        e = np.abs(cross_fitted(x, y, f, kind) - y)
        per = " ".join(f"{e[f == k].mean():.2f}" for k in np.unique(f))
        print(f"{kind:12s} mean {e.mean():.3f}  median {np.median(e):.3f}  p95 {np.percentile(e, 95):.2f}  folds {per}")


if __name__ == "__main__":
    main()
