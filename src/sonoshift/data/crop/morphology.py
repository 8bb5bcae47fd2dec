"""Small binary-mask operations used by the field-of-view crop (OpenCV, vectorized, uint8/bool masks)."""

from __future__ import annotations

import cv2
import numpy as np


def disk(radius: int) -> np.ndarray:
    """Elliptic structuring element of the given radius in pixels (diameter 2 r + 1)."""
    r = max(int(radius), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def radius_px(fraction: float, shape: tuple[int, int]) -> int:
    """A radius given as a fraction of the shorter image side -> pixels (at least 1 when fraction > 0)."""
    if fraction <= 0:
        return 0
    return max(1, int(round(fraction * min(shape))))


def close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing (dilate then erode) with a disk; the border is padded so that it does not erode the mask."""
    if radius <= 0:
        return mask.astype(bool)
    m = cv2.copyMakeBorder(mask.astype(np.uint8), radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, disk(radius))
    return m[radius:-radius, radius:-radius].astype(bool)


def open_(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening (erode then dilate) with a disk: removes structures thinner than 2 r + 1 pixels."""
    if radius <= 0:
        return mask.astype(bool)
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk(radius)).astype(bool)


def largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` with its holes filled (bool, same shape); empty if none."""
    m = mask.astype(np.uint8)
    out = np.zeros_like(m)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return out.astype(bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    component = (labels == best).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool) | component.astype(bool)


def large_filled(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Union of the largest 8-connected component and every component of at least ``min_area`` pixels,
    each with its holes filled (bool, same shape)."""
    m = mask.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero((areas >= min_area) | (areas == areas.max())) + 1
    component = np.isin(labels, keep).astype(np.uint8)
    out = np.zeros_like(m)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool) | component.astype(bool)


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of all true pixels of ``mask`` (bool, same shape)."""
    m = mask.astype(np.uint8)
    out = np.zeros(mask.shape, np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return out.astype(bool)
    hull = cv2.convexHull(np.concatenate(contours))  # outer boundary points span the same hull as all pixels
    cv2.fillConvexPoly(out, hull, 1)
    return (out | m).astype(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a disk (pixels outside the image count as background)."""
    if radius <= 0:
        return mask.astype(bool)
    m = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    m = cv2.erode(m, disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return m[1:-1, 1:-1].astype(bool)
