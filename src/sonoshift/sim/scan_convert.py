"""Fan geometry: the polar (depth, angle) sample grid of a profile and its scan conversion to the output image.

The probe face is an arc of radius R around a virtual apex; a sample at depth r (cm, from the face) and angle
theta lies at in-plane position X = (R + r) sin(theta), Y = (R + r) cos(theta) - R (cm; Y = 0 at the centre of the
face, Y grows into the body). The output image is square; the fan is fitted below a top margin and between side
margins that hold the burned-in overlay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sonoshift.sim.profiles import Geometry

TOP_MARGIN = 0.12  # fraction of the image height above the fan (text, logo, clock)
BOTTOM_MARGIN = 0.03
SIDE_MARGIN = 0.03  # fraction of the width on each side
AXIAL_OVERSAMPLING = 1.25  # depth samples per output pixel along the fan axis (resolves the axial PSF)


@dataclass(frozen=True, eq=False)
class View:
    """A geometry sampled for one output size.

    r_cm (n_r,) depths, theta (n_t,) angles (rad); X, Y (n_r, n_t) in-plane positions (cm); map_r, map_t (S, S)
    float32 polar sample coordinates of each output pixel; mask (S, S) bool inside the fan; px_per_cm; top_px (row
    of Y = 0 ... of the fan's shallowest point) and apex_col (column of the fan axis).
    """

    geometry: Geometry
    size: int
    r_cm: np.ndarray
    theta: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    map_r: np.ndarray
    map_t: np.ndarray
    mask: np.ndarray
    px_per_cm: float
    y0_px: float
    apex_col: float

    @property
    def dr_cm(self) -> float:
        return float(self.r_cm[1] - self.r_cm[0])

    @property
    def dtheta(self) -> float:
        return float(self.theta[1] - self.theta[0])

    def depth_row(self, depth_cm: float) -> int:
        """Output row of the fan axis at ``depth_cm`` below the probe face."""
        return int(round(self.y0_px + depth_cm * self.px_per_cm))


def make_view(geometry: Geometry, size: int) -> View:
    """The polar grid and scan-conversion maps of ``geometry`` for a ``size`` x ``size`` output image."""
    R, D = geometry.radius_cm, geometry.depth_cm
    a = math.radians(geometry.half_angle_deg)
    x_half = (R + D) * math.sin(a)
    y_min, y_max = R * math.cos(a) - R, D
    usable_w = size * (1 - 2 * SIDE_MARGIN)
    usable_h = size * (1 - TOP_MARGIN - BOTTOM_MARGIN)
    scale = min(usable_w / (2 * x_half), usable_h / (y_max - y_min))
    apex_col = (size - 1) / 2
    y0 = size * TOP_MARGIN - y_min * scale  # row of Y = 0
    n_r = max(16, int(round(AXIAL_OVERSAMPLING * D * scale)))
    n_t = max(16, int(round(2 * a * (R + 0.6 * D) * scale)))
    r_cm = np.linspace(0.0, D, n_r)
    theta = np.linspace(-a, a, n_t)
    rr, tt = np.meshgrid(r_cm, theta, indexing="ij")
    X = ((R + rr) * np.sin(tt)).astype(np.float32)
    Y = ((R + rr) * np.cos(tt) - R).astype(np.float32)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (cols - apex_col) / scale
    y = (rows - y0) / scale
    rad = np.hypot(x, y + R) - R
    ang = np.arctan2(x, y + R)
    mask = (rad >= 0) & (rad <= D) & (np.abs(ang) <= a)
    map_r = (rad / D * (n_r - 1)).astype(np.float32)
    map_t = ((ang + a) / (2 * a) * (n_t - 1)).astype(np.float32)
    map_r[~mask] = -10.0
    map_t[~mask] = -10.0
    return View(geometry, size, r_cm, theta, X, Y, map_r, map_t, mask, float(scale), float(y0), float(apex_col))


def scan_convert(polar: np.ndarray, view: View, nearest: bool = False) -> np.ndarray:
    """Resample a polar (n_r, n_t) array onto the output image (S, S); 0 outside the fan.

    Images use bilinear interpolation; label maps (``nearest=True``) keep exact class ids.
    """
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = polar if polar.dtype in (np.uint8, np.float32) else polar.astype(np.float32)
    # Pixels outside the fan map far outside the polar grid, so the constant border makes them 0.
    return cv2.remap(src, view.map_t, view.map_r, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def polar_blocks(view: View, boxes: np.ndarray) -> np.ndarray:
    """Index ranges of the polar grid covering in-plane boxes.

    ``boxes`` (n, 4) rows (x0, x1, y0, y1) in cm; returns (n, 4) int rows (r0, r1, t0, t1) such that every grid
    sample inside a box has r0 <= row < r1 and t0 <= column < t1 (empty ranges when the box is above the apex).
    """
    R = view.geometry.radius_cm
    x0, x1, y0, y1 = (boxes[:, i] for i in range(4))
    # Distance from the apex (0, -R): to the nearest point of the box, and to its farthest corner.
    nx = np.clip(0.0, x0, x1)
    ny = np.clip(-R, y0, y1)
    d_min = np.hypot(nx, ny + R) - R
    d_max = np.maximum(np.hypot(np.maximum(np.abs(x0), np.abs(x1)), np.maximum(np.abs(y0 + R), np.abs(y1 + R))) - R, 0)
    r = view.r_cm
    r0 = np.maximum(np.searchsorted(r, d_min) - 1, 0)
    r1 = np.minimum(np.searchsorted(r, d_max) + 1, len(r))
    # Extreme angles of a box below the apex are reached at its corners (atan2 is monotonic in x there).
    yb = np.maximum(y0, -R + 1e-9) + R
    a_lo = np.minimum(np.arctan2(x0, yb), np.arctan2(x0, y1 + R))
    a_hi = np.maximum(np.arctan2(x1, yb), np.arctan2(x1, y1 + R))
    t0 = np.maximum(np.searchsorted(view.theta, a_lo) - 1, 0)
    t1 = np.minimum(np.searchsorted(view.theta, a_hi) + 1, len(view.theta))
    above = y0 + R <= 0  # the box reaches above the apex: keep all angles
    t0 = np.where(above, 0, t0)
    t1 = np.where(above, len(view.theta), t1)
    empty = y1 + R <= 0
    r1 = np.where(empty, r0, r1)
    return np.stack([r0, r1, t0, t1], axis=1).astype(np.int64)
