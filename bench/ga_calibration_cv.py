"""Does a size-dependent HC calibration help? Cross-fitted on the out-of-fold HCs of a `ga cv-hc18` folder: for
each fold, every calibration is fitted on the other folds' (measured, official) HC pairs only and applied to the
fold, so no image's own truth enters its calibration.

    python bench/ga_calibration_cv.py runs/ga_cv5/per_image.csv

With a crop refiner in the CV (per_image_first_stage.csv beside it), it also cross-fits the refiner's growth
limit (``ga build --refine-max-growth``): per fold, the factor (from a grid) that minimises the other folds' mean
error, applied to the fold.

Prints HC abs error mean / median / 95th percentile (mm, pooled) and the per-fold means for: none, a constant
shift (median residual), a ratio (median official / measured), a least-squares line, the same line fitted
without residuals beyond 3 robust sigma, and a median shift per measured-HC band (< 110, 110-250, >= 250 mm).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sonoshift.errors import exit_on_error

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


GROWTH_GRID = (1.02, 1.03, 1.04, 1.05, 1.06, 1.08, 1.1, 1.15, np.inf)


def gated(first: np.ndarray, refined: np.ndarray, limit: float) -> np.ndarray:
    """The refined HC, or the first-stage HC where the refined one is more than ``limit`` x larger."""
    return np.where(refined > limit * first, first, refined)


def cross_fitted_gate(first: np.ndarray, refined: np.ndarray, y: np.ndarray, fold: np.ndarray):
    """Per fold: the grid limit with the smallest mean |error| on the other folds, applied to the fold.
    Returns (HCs, chosen limit per fold)."""
    out, chosen = np.empty_like(refined), []
    for k in np.unique(fold):
        te = fold == k
        errs = [np.abs(gated(first[~te], refined[~te], g) - y[~te]).mean() for g in GROWTH_GRID]
        g = GROWTH_GRID[int(np.argmin(errs))]
        chosen.append(g)
        out[te] = gated(first[te], refined[te], g)
    return out, chosen


def main() -> None:
    gate(sys.argv[1])
    t = pd.read_csv(sys.argv[1])
    t = t[t["head_found"].astype(bool)]
    x, y, f = t["hc_mm"].to_numpy(), t["hc_true_mm"].to_numpy(), t["fold"].to_numpy()
    print(f"{len(t)} out-of-fold HCs, {len(np.unique(f))} folds; calibration cross-fitted per fold")
    for kind in ("none", "shift", "ratio", "line", "robust line", "band shift"):
        e = np.abs(cross_fitted(x, y, f, kind) - y)
        per = " ".join(f"{e[f == k].mean():.2f}" for k in np.unique(f))
        print(f"{kind:12s} mean {e.mean():.3f}  median {np.median(e):.3f}  p95 {np.percentile(e, 95):.2f}  folds {per}")


def gate(path: str) -> None:
    first_path = Path(path).with_name("per_image_first_stage.csv")
    if not first_path.is_file():
        return
    t = pd.read_csv(path).set_index("name")
    f = pd.read_csv(first_path).set_index("name").loc[t.index]
    ok = t["head_found"].astype(bool).to_numpy() & f["head_found"].astype(bool).to_numpy()
    t, f = t[ok], f[ok]
    y, fold = t["hc_true_mm"].to_numpy(), t["fold"].to_numpy()
    hc, chosen = cross_fitted_gate(f["hc_mm"].to_numpy(), t["hc_mm"].to_numpy(), y, fold)
    for name, v in (("first stage only", f["hc_mm"].to_numpy()), ("refined", t["hc_mm"].to_numpy()),
                    ("refined, growth limit cross-fitted", hc)):
        e = np.abs(v - y)
        per = " ".join(f"{e[fold == k].mean():.2f}" for k in np.unique(fold))
        print(f"{name:36s} mean {e.mean():.3f}  median {np.median(e):.3f}  p95 {np.percentile(e, 95):.2f}  folds {per}")
    print("growth limit chosen per fold (on the other folds):", ", ".join(f"{g:g}" for g in chosen))


if __name__ == "__main__":
    exit_on_error(main)
