"""A rescue for the crop refiner's failures: when its map is not an ellipse, look again from smaller crops.

Around a small head whose first ellipse took in the fluid sac or the tissue beside it, the crop is too large; the
refiner (trained on crops that a head fills to about 1 / 1.3) then labels whatever fills the crop, and its map
is a ragged blob rather than an ellipse (docs/judges.md, session 9: the four worst images of the 5-fold CV).
``map_ellipse_iou`` measures that: the IoU of the map's largest filled component with the ellipse fitted to it.
Where it is low, ``search_fits`` re-crops around the first ellipse shrunk by each of a few scales, refines, crops
again around that refined ellipse (one step towards a fixed point) and keeps the candidate whose second map is
the most elliptic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from sonoshift.judges.ga.head_crop import Box, crop_box, crop_input
from sonoshift.judges.ga.head_fit import HeadFit, _largest, fit_head


def map_ellipse_iou(prob: np.ndarray, fit: HeadFit, box: Box) -> float:
    """IoU, in the crop's model pixels, of the largest filled component of ``prob > 0.5`` (a crop map of side S,
    box (x0, y0, side) in native pixels) with ``fit``'s ellipse (native pixels); 0 when no head was fitted."""
    if not fit.found:
        return 0.0
    s = prob.shape[0]
    comp = _largest(prob > 0.5).astype(np.uint8)
    filled = np.zeros_like(comp)
    cnts, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, cnts, -1, 1, thickness=-1)
    e, (x0, y0, side) = fit.ellipse, box
    k = side / s  # native pixels per model pixel; model centre j sits at native x0 + (j + 0.5) k - 0.5
    cx, cy = (e.cx + 0.5 - x0) / k - 0.5, (e.cy + 0.5 - y0) / k - 0.5
    ell = np.zeros_like(comp)
    cv2.ellipse(ell, ((float(cx), float(cy)), (float(2 * e.a / k), float(2 * e.b / k)), float(e.angle)), 1, -1)
    union = int((ell | filled).sum())
    return float((ell & filled).sum()) / union if union else 0.0


def crop_fits(
    second, frames: Sequence[np.ndarray], ellipses: Sequence, margin: float, batch_size: int = 32,
) -> tuple[list[Box], list[HeadFit], list[float]]:
    """The refiners' (``second``, a GaEstimator of the refiners) fit in a crop of side ``margin`` x 2a around each
    ellipse, its box, and the map's ellipse IoU."""
    from sonoshift.judges.ga.estimator import batch_probabilities

    boxes = [crop_box(e.cx, e.cy, e.a, margin) for e in ellipses]
    x = {s: torch.from_numpy(np.stack([crop_input(f, b, s) for f, b in zip(frames, boxes)])[:, None])
         for s in second.input_sizes}
    fits, ious = [], []
    for f, b, p in zip(frames, boxes, batch_probabilities(second, x, batch_size)):
        fit = fit_head(p, np.asarray(f).shape, box=b, amodal=second.amodal)
        fits.append(fit)
        ious.append(map_ellipse_iou(p, fit, b))
    return boxes, fits, ious


def search_fits(
    second, frames: Sequence[np.ndarray], first: Sequence[HeadFit], margin: float, scales: Sequence[float],
    batch_size: int = 32,
) -> list[tuple[HeadFit, float] | None]:
    """Per frame with a found first fit: the most elliptic of the candidates (fit, its map's IoU), one per scale s:
    refine in the crop around the first ellipse with both semi-axes times s, then refine again around that result.
    None where no candidate finds a head."""
    best: list[tuple[HeadFit, float] | None] = [None] * len(frames)
    for s in scales:
        idx = [i for i, f in enumerate(first) if f.found]
        if not idx:
            break
        shrunk = [dataclasses.replace(first[i].ellipse, a=first[i].ellipse.a * s, b=first[i].ellipse.b * s) for i in idx]
        _, once, _ = crop_fits(second, [frames[i] for i in idx], shrunk, margin, batch_size)
        again = [(i, f) for i, f in zip(idx, once) if f.found]
        if not again:
            continue
        _, twice, ious = crop_fits(second, [frames[i] for i, _ in again], [f.ellipse for _, f in again], margin,
                                   batch_size)
        for (i, _), fit, iou in zip(again, twice, ious):
            if fit.found and (best[i] is None or iou > best[i][1]):
                best[i] = (fit, iou)
    return best
