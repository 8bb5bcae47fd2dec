"""A scale check for heads measured with the sac or the tissue beside them (``ga build --scale-check``).

Around a small first-trimester head the first stage sometimes fits the gestational sac or the tissue beside the
head (1.5-1.7 x the skull); the crop refiner, which expects a head filling about 1 / 1.3 of its crop, then draws that
larger region and the polar refiner, which looks 0.75-1.25 x the outline, cannot reach the skull (docs/judges.md:
112_HC +58.7 mm, 032_2HC +18-24 mm on the 5-fold CVs of sessions 25-32). The scale check is a polar refiner with a
wide view (``configs/cpu/hc18_head_polar_wide.yaml``: 0.45-1.9 x the outline, trained on estimates moved by a
log-normal factor of sd 0.25 per semi-axis) that looks once along rays of every measured ellipse. Where the outline
it finds is well inside the measurement (HC ratio below ``GaEstimator.scale_check_ratio``), the head is measured
again from that outline (the crop refiners twice, as the crop search does, then the polar refiner), and the new
measurement is kept only if the wide view agrees with it better than with the first one (its HC ratio closer to 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from sonoshift.judges.ga.head_fit import EllipseFit, HeadFit
from sonoshift.judges.ga.polar_refiner import PolarRefiner, blend_ellipses, polar_fits

# measure again where the wide view's outline has less than this share of the measured HC (declared in session 33
# before the 5-fold CV; the sac failures sit at 0.6-0.8)
SCALE_CHECK_RATIO = 0.85


def wide_view(wide: PolarRefiner, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], offset_px: float,
              batch_size: int = 32) -> tuple[list[HeadFit], np.ndarray]:
    """(the outline the wide polar refiner finds from each fit's ellipse, as fits in the same offset convention;
    per fit the HC ratio of that outline to the fit, NaN where no head was found)."""
    seen = polar_fits(wide, frames, fits, offset_px, batch_size)
    ratios = np.array([w.hc_px(offset_px) / f.hc_px(offset_px) if f.found else math.nan for w, f in zip(seen, fits)])
    return seen, ratios


def hc_ratios(wide: PolarRefiner, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], offset_px: float,
              batch_size: int = 32) -> np.ndarray:
    """Per fit: HC of the outline the wide polar refiner finds from the fit's ellipse / the fit's HC (NaN where no
    head was found)."""
    return wide_view(wide, frames, fits, offset_px, batch_size)[1]


def scale_checked(wide: PolarRefiner, min_ratio: float, frames: Sequence[np.ndarray], fits: Sequence[HeadFit],
                  offset_px: float, remeasure: Callable[[list[np.ndarray], list[HeadFit]], list[HeadFit | None]],
                  batch_size: int = 32, blend: float = 0.0) -> tuple[list[HeadFit], np.ndarray]:
    """(``fits`` with the heads whose wide-view HC ratio is below ``min_ratio`` measured again by ``remeasure``
    (frames, start fits -> new fits, None where it finds no head) from the wide view's outline, where the wide view
    agrees better with the new measurement; each head's wide-view HC ratio of its kept measurement). ``blend`` > 0:
    each kept measurement is then moved that far toward the wide view's outline from it (a fourth look;
    polar_refiner.blend_ellipses, semi-axes grown by the offset)."""
    seen, ratios = wide_view(wide, frames, fits, offset_px, batch_size)
    out = list(fits)
    redo = [i for i, r in enumerate(ratios) if r < min_ratio]
    again = []
    if redo:
        starts = [seen[i] for i in redo]
        again = [(i, f) for i, f in zip(redo, remeasure([frames[i] for i in redo], starts)) if f is not None and f.found]
    if again:
        new_seen, new_ratios = wide_view(wide, [frames[i] for i, _ in again], [f for _, f in again], offset_px,
                                         batch_size)
        for (i, fit), w, r in zip(again, new_seen, new_ratios):
            if abs(math.log(r)) < abs(math.log(ratios[i])):
                out[i] = HeadFit(fit.ellipse, fits[i].border_fraction, fit.outline_confidence)
                seen[i], ratios[i] = w, r
    if blend > 0:
        out = [_toward(f, w, blend, offset_px) if f.found and w.found else f for f, w in zip(out, seen)]
    return out, ratios


def _toward(fit: HeadFit, seen: HeadFit, weight: float, offset_px: float) -> HeadFit:
    """``fit`` moved ``weight`` of the way toward ``seen`` (ellipses blended with their semi-axes grown by the
    offset, as the polar refiner blends); border share and outline confidence are ``fit``'s."""
    grow = (0.0, 0.0, offset_px, offset_px, 0.0)
    m, w = (tuple(v + g for v, g in zip(dataclasses.astuple(f.ellipse), grow)) for f in (fit, seen))
    cx, cy, a, b, ang = blend_ellipses(m, w, weight)
    ell = EllipseFit(cx=cx, cy=cy, a=a - offset_px, b=b - offset_px, angle=ang)
    return HeadFit(ell, fit.border_fraction, fit.outline_confidence)


__all__ = ["SCALE_CHECK_RATIO", "hc_ratios", "scale_checked", "wide_view"]
