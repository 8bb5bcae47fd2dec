"""Heads cut by the image border: a fitted correction of the HC that the networks under-draw across the cut.

Networks trained with cut copies still draw the visible part of a cut head a little too small across the cut, and
the ellipse extrapolated across the border multiplies that (docs/judges.md, sessions 30-31): the HC of a cut head
is biased low, the more so the more of its ellipse lies beyond the frame. The correction is a function of how much
of the measured ellipse lies outside (s, the share of its perimeter; border_cut.ellipse_outside) and of which edges
it crosses (w, the share of that part beyond the top or bottom edge; the rest is beyond the left or right one):

    log(HC_true / HC) = (1 - w) (c1 s + c2 s^2) + w (c3 s + c4 s^2)

fitted by least squares on heads that estimators measured on images they never saw, cut at random shares and sides
(``cut_rows``: the held-out images of each cross-validation fold; `sonoshift ga fit-cut-correction`). An estimator
with a correction (``GaEstimator.cut_correction``, `ga build --cut-correction`) scales both semi-axes of every head
whose ellipse crosses the border so that its HC takes the factor; heads inside the frame are not touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sonoshift.errors import SonoshiftError

MAX_CUT = 0.4  # the largest share of a head's extent that the fitting images lose (as the cut training copies)
MIN_HEADS = 20  # fewer cut heads than this cannot pin four coefficients down


@dataclass(frozen=True)
class CutCorrection:
    """(c1, c2) for the part of the ellipse beyond the left or right edge (``lateral``) and (c3, c4) beyond the top
    or bottom edge (``axial``), and how many cut heads they were fitted on."""

    lateral: tuple[float, float]
    axial: tuple[float, float]
    heads: int = 0

    def log_factor(self, outside: np.ndarray | float, axial: np.ndarray | float) -> np.ndarray | float:
        """log(HC_true / HC) predicted for an ellipse with ``outside`` of its perimeter beyond the frame, ``axial``
        of that beyond the top or bottom edge (0 where nothing is outside)."""
        s, w = np.asarray(outside, float), np.asarray(axial, float)
        (c1, c2), (c3, c4) = self.lateral, self.axial
        out = (1 - w) * (c1 * s + c2 * s * s) + w * (c3 * s + c4 * s * s)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return {"lateral": list(self.lateral), "axial": list(self.axial), "heads": self.heads}

    @classmethod
    def from_dict(cls, d: dict) -> CutCorrection:
        try:
            lat, ax = tuple(float(c) for c in d["lateral"]), tuple(float(c) for c in d["axial"])
        except (KeyError, TypeError, ValueError) as e:
            raise SonoshiftError(f"a cut correction needs 'lateral' and 'axial' coefficient pairs ({e}).") from None
        if len(lat) != 2 or len(ax) != 2 or not all(math.isfinite(c) for c in lat + ax):
            raise SonoshiftError("a cut correction needs two finite coefficients for 'lateral' and two for 'axial'.")
        return cls(lat, ax, int(d.get("heads", 0)))


def load_cut_correction(path: str | Path) -> CutCorrection:
    """A correction written by `sonoshift ga fit-cut-correction` (JSON)."""
    p = Path(path)
    if not p.is_file():
        raise SonoshiftError(f"{p} does not exist: give the JSON that `sonoshift ga fit-cut-correction` wrote.")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SonoshiftError(f"{p} is not JSON ({e.msg}, line {e.lineno}).") from None
    return CutCorrection.from_dict(d.get("correction", d))


def _design(outside: np.ndarray, axial: np.ndarray) -> np.ndarray:
    s, w = np.asarray(outside, float), np.asarray(axial, float)
    return np.stack([(1 - w) * s, (1 - w) * s * s, w * s, w * s * s], 1)


def fit_cut_correction(rows: pd.DataFrame) -> CutCorrection:
    """Least squares of log(hc_true_mm / hc_mm) on the heads of ``rows`` whose ellipse crosses the border
    (columns outside, axial, hc_true_mm, hc_mm; rows with no head are skipped)."""
    d = rows[np.isfinite(rows["hc_mm"]) & (rows["outside"] > 0)]
    if len(d) < MIN_HEADS:
        raise SonoshiftError(f"only {len(d)} measured heads cross the image border; a cut correction needs at "
                             f"least {MIN_HEADS} (measure more cut images).")
    y = np.log(d["hc_true_mm"].to_numpy(float) / d["hc_mm"].to_numpy(float))
    c, *_ = np.linalg.lstsq(_design(d["outside"], d["axial"]), y, rcond=None)
    return CutCorrection((float(c[0]), float(c[1])), (float(c[2]), float(c[3])), len(d))


def correct_ellipse(ellipse, offset_px: float, outside: float, axial: float, corr: CutCorrection):
    """``ellipse`` (an EllipseFit whose semi-axes the estimator grows by ``offset_px``) scaled about its centre so
    that its HC takes the factor exp(``corr.log_factor``); unchanged when nothing of it is outside."""
    if outside <= 0:
        return ellipse
    f = math.exp(corr.log_factor(outside, axial))
    a, b = ellipse.a + offset_px, ellipse.b + offset_px
    return dataclasses.replace(ellipse, a=a * f - offset_px, b=b * f - offset_px)


def cut_rows(est, data_root: str | Path, seed: int | list[int], per_image: int = 1, max_cut: float = MAX_CUT
             ) -> pd.DataFrame:
    """``est`` on its held-out HC18 images (hc18_report.heldout_rows), each cut ``per_image`` times at a share drawn
    uniform in (0, ``max_cut``] on a random side (generator ``seed``): name, cut, side, hc_true_mm, hc_mm, outside,
    axial (of the measured ellipse, semi-axes grown by the offset)."""
    from sonoshift.io.images import read_gray
    from sonoshift.io.labels import read_labels
    from sonoshift.judges.ga.border_cut import SIDES, crop_to_cut, ellipse_outside
    from sonoshift.judges.ga.estimator import measure
    from sonoshift.judges.ga.hc18_report import heldout_rows

    _, val = heldout_rows(est.segmenter, str(data_root))
    imgs = [read_gray(p) for p in val["image_path"]]
    masks = [read_labels(p) > 127 for p in val["mask_path"]]
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(per_image):
        u = rng.random((len(val), 2))
        cuts, sides = max_cut * (1 - u[:, 0]), (u[:, 1] * SIDES).astype(int)
        crops = [crop_to_cut(f, m, c, s) for f, m, c, s in zip(imgs, masks, cuts, sides)]
        m = measure(est, crops, list(val["pixel_size_mm"]))
        feats = [ellipse_outside(r.cx, r.cy, r.a_px, r.b_px, r.angle, c.shape) if r.head_found else (np.nan, np.nan)
                 for r, c in zip(m.itertuples(), crops)]
        parts.append(pd.DataFrame({"name": list(val["filename"]), "cut": cuts, "side": sides,
                                   "hc_true_mm": val["hc_mm"].to_numpy(float), "hc_mm": m["hc_mm"].to_numpy(float),
                                   "outside": [f[0] for f in feats], "axial": [f[1] for f in feats]}))
    return pd.concat(parts, ignore_index=True)


def fit_from_estimators(paths: list[str | Path], data_root: str | Path, seed: int = 0, per_image: int = 2,
                        max_cut: float = MAX_CUT, progress: bool = True) -> tuple[CutCorrection, pd.DataFrame]:
    """Each estimator (one per cross-validation fold) measures its own held-out images cut at random
    (``cut_rows``, the generator seeded by ``seed`` and the estimator's index), and one correction is fitted to
    all of them: every head is measured by an estimator that never saw it."""
    from sonoshift.judges.ga.estimator import load_ga_estimator
    from sonoshift.progress import track

    parts = []
    for k, p in enumerate(track(paths, "measure cut held-out heads", disable=not progress)):
        est = uncorrected(load_ga_estimator(p))
        parts.append(cut_rows(est, data_root, seed=[seed, k], per_image=per_image, max_cut=max_cut)
                     .assign(estimator=str(p)))
    rows = pd.concat(parts, ignore_index=True)
    return fit_cut_correction(rows), rows


def uncorrected(est):
    """``est`` (and its border estimator) without a cut correction: what a correction is fitted on."""
    border = est.border and dataclasses.replace(est.border, cut_correction=None)
    return dataclasses.replace(est, cut_correction=None, border=border)


def write_cut_correction(corr: CutCorrection, rows: pd.DataFrame, out: str | Path, **fitted_on) -> None:
    """``out`` (JSON: the coefficients, what they were fitted on, the residual spread) and, beside it,
    ``<out stem>_rows.csv`` (every cut head measured), each written whole or not at all."""
    from sonoshift.atomic import atomic_write_text

    d = rows[np.isfinite(rows["hc_mm"]) & (rows["outside"] > 0)]
    before = np.log(d["hc_true_mm"] / d["hc_mm"]).to_numpy(float)
    after = before - np.asarray(corr.log_factor(d["outside"].to_numpy(), d["axial"].to_numpy()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_name(out.stem + "_rows.csv"), rows.to_csv(index=False))
    atomic_write_text(out, json.dumps({
        "correction": corr.to_dict(), "fitted_on": fitted_on | {"rows": len(rows), "cut_heads": len(d)},
        "log_ratio_mean_before": float(before.mean()), "log_ratio_mean_after": float(after.mean()),
        "log_ratio_sd_before": float(before.std()), "log_ratio_sd_after": float(after.std()),
    }, indent=2))
