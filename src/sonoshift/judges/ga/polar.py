"""Polar geometry of the head outline: rays from an estimated ellipse, the image sampled along them, and where
each ray meets another ellipse.

A prior ellipse (cx, cy, a, b, angle in degrees, OpenCV convention as in ``EllipseFit``) defines ``angles`` rays
from its centre through the points (a cos phi, b sin phi) of its outline (rotated by ``angle``); sample ``j`` of a
ray lies at scale s_j = s_min + (s_max - s_min) j / (radii - 1), so s = 1 is the prior outline. The image sampled on
that (radii, angles) grid is a strip in which the head outline runs left to right; a refiner finds, per column,
the row where the outline crosses it (polar_refiner.py), and ``rows_to_points`` maps the rows back to native pixels.
Pure geometry: no learning here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Ellipse = tuple[float, float, float, float, float]  # cx, cy, a, b, angle (degrees)


@dataclass(frozen=True)
class PolarGrid:
    """``angles`` rays x ``radii`` samples per ray, from ``s_min`` to ``s_max`` times the prior outline."""

    angles: int = 128
    radii: int = 96
    s_min: float = 0.75
    s_max: float = 1.25

    def __post_init__(self) -> None:
        if self.angles < 8 or self.radii < 4 or not 0 < self.s_min < 1 < self.s_max:
            raise ValueError(f"a polar grid needs angles >= 8, radii >= 4 and 0 < s_min < 1 < s_max, got {self}.")

    @property
    def scales(self) -> np.ndarray:
        return np.linspace(self.s_min, self.s_max, self.radii)

    def row_of(self, s: np.ndarray) -> np.ndarray:
        """Fractional row of scale(s) ``s``."""
        return (np.asarray(s, float) - self.s_min) / (self.s_max - self.s_min) * (self.radii - 1)

    def scale_of(self, row: np.ndarray) -> np.ndarray:
        """Scale of fractional row(s) ``row``."""
        return self.s_min + np.asarray(row, float) / (self.radii - 1) * (self.s_max - self.s_min)

    def spacing(self, prior: Ellipse) -> float:
        """Mean radial distance between two samples of a ray, in native pixels."""
        return (self.s_max - self.s_min) * 0.5 * (prior[2] + prior[3]) / (self.radii - 1)


def ray_directions(prior: Ellipse, angles: int) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy), each (angles,): the vector from the prior's centre to its outline along each ray."""
    _, _, a, b, ang = prior
    t = math.radians(ang)
    phi = 2 * math.pi * np.arange(angles) / angles
    u, v = a * np.cos(phi), b * np.sin(phi)
    return u * math.cos(t) - v * math.sin(t), u * math.sin(t) + v * math.cos(t)


def sample_polar(image: np.ndarray, prior: Ellipse, grid: PolarGrid) -> np.ndarray:
    """(radii, angles) float32 strip of a 2D float ``image`` along the prior's rays (bilinear; 0 outside the
    image), after a Gaussian blur of half the radial spacing so that large heads are not aliased."""
    sigma = 0.5 * grid.spacing(prior)
    img = np.asarray(image, np.float32)
    if sigma > 0.6:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    mx, my = sample_points(prior, grid)
    return cv2.remap(img, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def sample_points(prior: Ellipse, grid: PolarGrid) -> tuple[np.ndarray, np.ndarray]:
    """Native x and y, each (radii, angles), of the strip's samples along the prior's rays."""
    dx, dy = ray_directions(prior, grid.angles)
    s = grid.scales[:, None]
    return prior[0] + s * dx[None, :], prior[1] + s * dy[None, :]


def exit_rows(prior: Ellipse, grid: PolarGrid, shape: tuple[int, int]) -> np.ndarray:
    """(angles,) the first row of each ray whose sample lies outside an image of ``shape`` (H, W) (more than half a
    pixel beyond the outer pixel centres); ``grid.radii`` where the whole ray is inside."""
    out = beyond_frame(*sample_points(prior, grid), shape)
    return np.where(out.any(0), out.argmax(0), grid.radii)


def beyond_frame(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whether native points lie outside an image of ``shape`` (H, W): more than half a pixel beyond the outer pixel
    centres."""
    h, w = shape
    return (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)


def ray_hits(prior: Ellipse, truth: Ellipse, grid: PolarGrid) -> np.ndarray:
    """(angles,) fractional row where each ray of the prior leaves ``truth`` (the larger root of the ray-ellipse
    quadratic; NaN where a ray misses it, i.e. the prior's centre lies outside ``truth`` and the ray passes by)."""
    dx, dy = ray_directions(prior, grid.angles)
    gx, gy, ga, gb, gang = truth
    t = math.radians(gang)
    c, s = math.cos(t), math.sin(t)
    ox, oy = prior[0] - gx, prior[1] - gy
    ou, ov = ox * c + oy * s, -ox * s + oy * c
    du, dv = dx * c + dy * s, -dx * s + dy * c
    qa = (du / ga) ** 2 + (dv / gb) ** 2
    qb = 2 * (ou * du / ga**2 + ov * dv / gb**2)
    qc = (ou / ga) ** 2 + (ov / gb) ** 2 - 1
    disc = qb**2 - 4 * qa * qc
    root = (-qb + np.sqrt(np.where(disc >= 0, disc, np.nan))) / (2 * qa)
    return grid.row_of(root)


def rows_to_points(prior: Ellipse, rows: np.ndarray, grid: PolarGrid) -> np.ndarray:
    """(angles, 2) native x, y of fractional ``rows`` (one per ray)."""
    dx, dy = ray_directions(prior, grid.angles)
    s = grid.scale_of(rows)
    return np.stack([prior[0] + s * dx, prior[1] + s * dy], 1)
