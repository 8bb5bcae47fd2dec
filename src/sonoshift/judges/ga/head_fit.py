"""One ellipse per image from a head probability map at model resolution, measured at native resolution.

The map's largest component above 0.5 is kept, its 0.5 iso-contour is traced with sub-pixel precision
(marching squares), mapped to native pixel coordinates, points within a few model pixels of the image border are
dropped (a head cut by the border keeps only its true outline), and a direct least-squares ellipse (Fitzgibbon,
always an ellipse) is fitted through the rest. The fit is then trimmed: contour points further from the ellipse than ``trim_k`` robust
standard deviations (and more than one model pixel) are dropped and the ellipse refitted until the kept points
settle (at most ``trim_iters`` times), so a segmentation that leaks into a neighbouring structure or misses a
stretch of skull bends the ellipse less.
Semi-axes then grow by ``offset_px`` native pixels: HC18's reference ellipse runs along the drawn outline, about
one pixel inside the edge of the filled annotation mask, so the offset is calibrated on training masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.measure import find_contours

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.downstream.ellipse import EllipseFit
from sonoshift.judges.ga.head_crop import box_to_native


@dataclass(frozen=True)
class HeadFit:
    """An ellipse in native pixels (None when no head), the share of contour points dropped at the border,
    after the polar refiner how sure it was of the outline (polar_refiner.outline_confidence; NaN before) and, once
    measured, the share of the ellipse's perimeter beyond the frame (border_cut.ellipse_outside: what was
    extrapolated across a border that cuts the head), and whether it was measured from a second first stage's
    start (second_opinion.py)."""

    ellipse: EllipseFit | None
    border_fraction: float = 0.0
    outline_confidence: float = math.nan
    outside_fraction: float = 0.0
    second_opinion: bool = False

    @property
    def found(self) -> bool:
        return self.ellipse is not None

    def hc_px(self, offset_px: float = 0.0) -> float:
        """Perimeter in native pixels with semi-axes grown by ``offset_px`` (NaN when no head, and when a semi-axis is
        not longer than a negative offset: a blob that small is no head)."""
        if self.ellipse is None or min(self.ellipse.a, self.ellipse.b) + offset_px <= 0:
            return math.nan
        return ellipse_perimeter(self.ellipse.a + offset_px, self.ellipse.b + offset_px)


def _largest(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _valid(box) -> bool:
    (cx, cy), (d1, d2), _ = box
    return bool(np.isfinite([cx, cy, d1, d2]).all() and min(d1, d2) > 0)


def ellipse_residuals(pts: np.ndarray, box) -> np.ndarray:
    """Signed distance (pixels, + outside) of points (N, 2) x, y from an OpenCV ellipse box, measured along the
    ray from the centre (close to the true normal distance for head-like ellipses near their outline)."""
    (cx, cy), (d1, d2), angle = box
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    dx, dy = pts[:, 0] - cx, pts[:, 1] - cy
    u, v = dx * c + dy * s, -dx * s + dy * c
    r = np.sqrt((u / (d1 / 2)) ** 2 + (v / (d2 / 2)) ** 2)
    return (r - 1) * np.hypot(u, v) / np.maximum(r, 1e-9)


def _trimmed_fit(pts: np.ndarray, scale: float, k: float, iters: int):
    """Direct ellipse fit, refitted ``iters`` times without the points beyond max(k robust sigma, ``scale``)."""
    try:
        box = cv2.fitEllipseDirect(pts)
    except cv2.error:
        return None
    if not _valid(box):
        return None
    kept = np.ones(len(pts), bool)
    for _ in range(iters):
        r = ellipse_residuals(pts, box)
        sigma = 1.4826 * np.median(np.abs(r - np.median(r)))
        keep = np.abs(r) <= max(k * sigma, scale)
        if (keep == kept).all() or keep.sum() < 6:
            break
        kept = keep
        new = cv2.fitEllipseDirect(pts[keep])
        if not _valid(new):
            break
        box = new
    return box


def fit_head(
    prob: np.ndarray, native_shape: tuple[int, int], min_area: int = 20, trim_k: float = 2.0, trim_iters: int = 10,
    border_margin: float = 4.0, box: tuple[int, int, int] | None = None, pad: tuple[int, int] = (0, 0),
    amodal: bool = False,
) -> HeadFit:
    """Fit the head ellipse from ``prob`` (S_h, S_w) float in [0, 1], a map of the whole image resized to the
    model size, for an image of ``native_shape`` (H, W). Returns HeadFit (ellipse in native pixel coordinates,
    pixel centres at integers). ``trim_iters`` 0 keeps the plain fit through every contour point. Contour points
    within ``border_margin`` model pixels of the image border are dropped: where a head leaves the image the
    network closes its map a few pixels inside the border, raggedly (bench/ga_border.py: HC18 held-out heads cut
    by 20 % of their width, mean error 14.2 mm with a 0.5 px margin, 12.0 with 4 px; uncut heads unchanged).

    ``box`` (x0, y0, side): ``prob`` is a map of that native-pixel square (head_crop.py) instead of the whole
    image; points near the crop's own edges are dropped too (a head larger than the crop leaves it there).

    ``pad`` (rows, columns): ``prob`` maps the frame on a canvas with that many zero pixels on each side
    (border_cut.canvas_padding), points near the canvas edges are dropped. ``amodal``: the map draws the head on
    beyond the frame's border (networks trained with ``Hc18Config.amodal``), so points there are kept and only the
    map's own edges drop points; ``border_fraction`` is then the share of points at or beyond the border."""
    sh, sw = prob.shape
    comp = _largest(prob > 0.5)
    if comp.sum() < min_area:
        return HeadFit(None)
    # keep only the chosen component (filled: holes where the brain is dark do not matter to the outline)
    filled = np.zeros_like(comp, dtype=np.uint8)
    cnts, _ = cv2.findContours(comp.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, cnts, -1, 1, thickness=-1)
    field = np.where(filled > 0, np.maximum(prob, 0.5 + 1e-3), np.minimum(prob, 0.5 - 1e-3))
    field = np.where(cv2.dilate(filled, np.ones((3, 3), np.uint8)) > 0, field, 0.0)
    padded = np.pad(field, 1, constant_values=0.0)
    contours = find_contours(padded, 0.5)
    if not contours:
        return HeadFit(None)
    c = max(contours, key=len) - 1.0  # (row, col) in model pixels, pixel centres at integers
    h, w = native_shape
    bm = border_margin
    ph, pw = pad
    if box is None:
        ys = (c[:, 0] + 0.5) * (h + 2 * ph) / sh - 0.5 - ph
        xs = (c[:, 1] + 0.5) * (w + 2 * pw) / sw - 0.5 - pw
        mx, my = (w + 2 * pw) / sw, (h + 2 * ph) / sh
    else:
        xs, ys = box_to_native(c[:, 0], c[:, 1], box, sh)
        mx = my = box[2] / sh
    if box is None and not (ph or pw or amodal):
        in_map = np.ones(len(c), bool)  # the map's edges are the frame's border, dropped below
    else:
        in_map = (c[:, 0] > bm) & (c[:, 0] < sh - 1 - bm) & (c[:, 1] > bm) & (c[:, 1] < sw - 1 - bm)
    # points near the image border belong to the border (or to the network's guess there), not to the head
    at_border = ~((xs > mx * bm) & (xs < w - 1 - mx * bm) & (ys > my * bm) & (ys < h - 1 - my * bm))
    inside = in_map if amodal else in_map & ~at_border
    border_fraction = float(at_border.mean() if amodal else 1 - inside.mean())
    pts = np.stack([xs[inside], ys[inside]], 1).astype(np.float32)
    if len(pts) < 6:
        return HeadFit(None, border_fraction)
    return HeadFit(trimmed_ellipse(pts, 0.5 * (mx + my), trim_k, trim_iters), border_fraction)


def trimmed_ellipse(pts: np.ndarray, scale: float, k: float = 2.0, iters: int = 10) -> EllipseFit | None:
    """The trimmed direct fit (see the module doc) of float32 (N, 2) x, y points, ``scale`` the smallest residual
    (pixels) ever trimmed; None when the fit fails."""
    box = _trimmed_fit(pts, scale, k, iters)
    if box is None:
        return None
    (cx, cy), (d1, d2), angle = box
    return EllipseFit(cx=cx, cy=cy, a=max(d1, d2) / 2, b=min(d1, d2) / 2, angle=angle if d1 >= d2 else angle + 90)


def calibrate_offset(masks: list[np.ndarray], hc_px_true: list[float]) -> float:
    """The semi-axis offset (native pixels) that makes ellipses fitted to reference masks match the reference
    perimeters (``offset_for_fits`` of the masks' fits)."""
    return offset_for_fits([fit_head(m.astype(np.float32), m.shape) for m in masks], hc_px_true)


def offset_for_fits(fits: list[HeadFit], hc_px_true: list[float]) -> float:
    """The median over fits of the semi-axis offset d solving perimeter(a + d, b + d) = reference (exact for a
    circle: d = reference / (2 pi) - r); fits without an ellipse are skipped."""
    ds = []
    for fit, ref in zip(fits, hc_px_true):
        if fit.ellipse is None:
            continue
        base = fit.hc_px(0.0)
        # perimeter grows by ~2 pi per pixel of both semi-axes: one Newton step is exact to 1e-6 here
        d = (ref - base) / (2 * math.pi)
        d += (ref - fit.hc_px(d)) / (2 * math.pi)
        if math.isfinite(d):  # NaN where the reference is smaller than any ellipse of this shape
            ds.append(d)
    return float(np.median(ds)) if ds else 0.0
