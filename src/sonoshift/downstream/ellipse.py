"""Head measurements from a binary mask: the fitted ellipse, its circumference, and how ellipse-like the mask is.

HC18 annotates the fetal head as an ellipse and defines head circumference (HC) as that ellipse's perimeter; the
same fit turns a predicted mask into an HC and gives quality proxies where no ground truth exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sonoshift.biometry.ellipse import ellipse_perimeter


@dataclass(frozen=True)
class EllipseFit:
    """A fitted ellipse in pixel coordinates: centre (x, y), semi-axes a >= b, rotation in degrees (OpenCV)."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    @property
    def perimeter(self) -> float:
        """Ramanujan's approximation of the perimeter, in pixels (error < 1e-4 relative for head-like shapes)."""
        return ellipse_perimeter(self.a, self.b)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean (H, W) mask (all False when the mask is empty)."""
    m = np.asarray(mask, dtype=np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(m.shape, dtype=bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return lab == best


def fit_ellipse(mask: np.ndarray) -> EllipseFit | None:
    """Least-squares ellipse (OpenCV ``fitEllipse``) through the outer contour of the mask's largest component.

    Returns None when the component has fewer than 5 contour points (no ellipse can be fitted).
    """
    comp = largest_component(mask).astype(np.uint8)
    contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=len)
    if len(c) < 5:
        return None
    (cx, cy), (d1, d2), angle = cv2.fitEllipse(c)
    # The contour runs through the centres of the border pixels; the mask's edge lies half a pixel further out.
    a, b = max(d1, d2) / 2 + 0.5, min(d1, d2) / 2 + 0.5
    return EllipseFit(cx=cx, cy=cy, a=a, b=b, angle=angle if d1 >= d2 else angle + 90)


def ellipse_mask(fit: EllipseFit, shape: tuple[int, int]) -> np.ndarray:
    """The filled ellipse as a boolean (H, W) mask."""
    out = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(
        out,
        (round(fit.cx * 16), round(fit.cy * 16)),
        (round(fit.a * 16), round(fit.b * 16)),
        fit.angle,
        0,
        360,
        1,
        thickness=-1,
        lineType=cv2.LINE_8,
        shift=4,
    )
    return out.astype(bool)


def head_measurements(mask: np.ndarray, pixel_size: float | None = None) -> dict[str, float]:
    """Proxies for a predicted head mask (H, W) bool.

    Returns area_fraction (mask pixels / image pixels, in [0, 1]), ellipse_iou (IoU between the largest component
    and its fitted ellipse, in [0, 1]; 1 for a perfect ellipse), components (count of 8-connected pieces),
    hc_px (fitted-ellipse perimeter in pixels) and, with ``pixel_size`` in mm, hc_mm. NaN where nothing fits.
    """
    m = np.asarray(mask, dtype=bool)
    n_comp = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)[0] - 1
    out = {"area_fraction": float(m.mean()), "components": float(n_comp), "ellipse_iou": math.nan,
           "hc_px": math.nan}
    fit = fit_ellipse(m)
    if fit is not None:
        comp = largest_component(m)
        ell = ellipse_mask(fit, m.shape)
        union = np.logical_or(comp, ell).sum()
        out["ellipse_iou"] = float(np.logical_and(comp, ell).sum() / union) if union else math.nan
        out["hc_px"] = fit.perimeter
    if pixel_size is not None:
        out["hc_mm"] = out["hc_px"] * float(pixel_size)
    return out
