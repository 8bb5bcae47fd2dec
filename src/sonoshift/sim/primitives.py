"""Solid shapes of the phantom and their rasterization on a slice plane.

A slice plane is ``P(X, Y) = origin + X * u + Y * d`` (cm), with unit vectors ``u`` (lateral) and ``d`` (depth).
Every shape is evaluated with affine functions of (X, Y), so a slice costs a few array operations per shape, and
shapes that do not reach the plane are skipped by a support-function test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ellipsoid:
    """Solid ellipsoid: centre (3,) cm, axes (3, 3) rows = unit axis vectors, radii (3,) cm."""

    label: int
    center: np.ndarray
    axes: np.ndarray
    radii: np.ndarray
    over: tuple[int, ...] | None = None  # labels it may paint over (None: any)


@dataclass(frozen=True)
class Capsule:
    """Solid capsule: segment p0-p1 (cm) swept by a ball of radius ``radius`` (cm)."""

    label: int
    p0: np.ndarray
    p1: np.ndarray
    radius: float
    over: tuple[int, ...] | None = None


Shape = Ellipsoid | Capsule


@dataclass(frozen=True)
class Plane:
    """A slice plane: origin (3,), lateral unit vector u (3,), depth unit vector d (3,), all in cm."""

    origin: np.ndarray
    u: np.ndarray
    d: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.d)
        return n / np.linalg.norm(n)


class PackedShapes:
    """Shapes with their parameters stacked in arrays, so that one plane is culled with a few array operations."""

    def __init__(self, shapes: tuple[Shape, ...]):
        self.shapes = tuple(shapes)
        ell = [s for s in self.shapes if isinstance(s, Ellipsoid)]
        cap = [s for s in self.shapes if isinstance(s, Capsule)]
        self.is_ell = np.array([isinstance(s, Ellipsoid) for s in self.shapes], dtype=bool)
        self.index = np.zeros(len(self.shapes), dtype=np.int64)
        self.index[self.is_ell] = np.arange(len(ell))
        self.index[~self.is_ell] = np.arange(len(cap))
        self.e_c = np.array([s.center for s in ell], dtype=np.float64).reshape(-1, 3)
        self.e_a = np.array([s.axes for s in ell], dtype=np.float64).reshape(-1, 3, 3)
        self.e_r = np.array([s.radii for s in ell], dtype=np.float64).reshape(-1, 3)
        self.c_p0 = np.array([s.p0 for s in cap], dtype=np.float64).reshape(-1, 3)
        self.c_p1 = np.array([s.p1 for s in cap], dtype=np.float64).reshape(-1, 3)
        self.c_r = np.array([s.radius for s in cap], dtype=np.float64)

    def boxes(self, plane: Plane) -> np.ndarray:
        """(n_shapes, 5) rows (hit, x0, x1, y0, y1): whether each shape reaches the plane, and its in-plane box (cm)."""
        n, u, d, o = plane.normal, plane.u, plane.d, plane.origin

        def extent(vec: np.ndarray) -> np.ndarray:
            return np.sqrt(np.sum((self.e_r * np.einsum("kij,j->ki", self.e_a, vec)) ** 2, axis=1))

        off = self.e_c - o
        e_hit = np.abs(off @ n) <= extent(n)
        ecx, ecy, ehx, ehy = off @ u, off @ d, extent(u), extent(d)
        e_box = np.stack([e_hit, ecx - ehx, ecx + ehx, ecy - ehy, ecy + ehy], axis=1)
        s0, s1 = (self.c_p0 - o) @ n, (self.c_p1 - o) @ n
        c_hit = ~((np.minimum(s0, s1) > self.c_r) | (np.maximum(s0, s1) < -self.c_r))
        x0, x1 = (self.c_p0 - o) @ u, (self.c_p1 - o) @ u
        y0, y1 = (self.c_p0 - o) @ d, (self.c_p1 - o) @ d
        r = self.c_r
        c_box = np.stack([c_hit, np.minimum(x0, x1) - r, np.maximum(x0, x1) + r,
                          np.minimum(y0, y1) - r, np.maximum(y0, y1) + r], axis=1)
        out = np.zeros((len(self.shapes), 5))
        out[self.is_ell] = e_box[self.index[self.is_ell]]
        out[~self.is_ell] = c_box[self.index[~self.is_ell]]
        return out


def _ellipsoid_mask(e: Ellipsoid, plane: Plane, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    off = plane.origin - e.center
    acc = None
    for k in range(3):
        a = e.axes[k]
        inv = 1.0 / float(e.radii[k])
        t = X * float(plane.u @ a) * inv + Y * float(plane.d @ a) * inv + float(off @ a) * inv
        acc = t * t if acc is None else acc + t * t
    return acc <= 1.0


def _capsule_mask(c: Capsule, plane: Plane, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    v = c.p1 - c.p0
    vv = float(v @ v) + 1e-12
    off = plane.origin - c.p0
    w = [X * float(plane.u[k]) + Y * float(plane.d[k]) + float(off[k]) for k in range(3)]
    t = np.clip((w[0] * float(v[0]) + w[1] * float(v[1]) + w[2] * float(v[2])) / vv, 0.0, 1.0)
    dist2 = sum((w[k] - t * float(v[k])) ** 2 for k in range(3))
    return dist2 <= c.radius**2


BlockFn = Callable[[np.ndarray], np.ndarray]


def rasterize(
    packed: PackedShapes,
    plane: Plane,
    X: np.ndarray,
    Y: np.ndarray,
    background: int,
    block: BlockFn | None = None,
) -> np.ndarray:
    """Paint the shapes in order onto the plane samples (X, Y) (cm, 2-D, same shape); returns uint8 label ids.

    A later shape overwrites an earlier one, but only where the current label is in its ``over`` set. ``block``
    maps in-plane boxes (n, 4) rows (x0, x1, y0, y1) to (n, 4) index rows (r0, r1, c0, c1) of X/Y that cover
    them, so a small shape is evaluated on a small block only (None: everywhere).
    """
    labels = np.full(X.shape, background, dtype=np.uint8)
    lut = np.zeros(256, dtype=bool)
    boxes = packed.boxes(plane)
    hits = np.flatnonzero(boxes[:, 0])
    if block is not None:
        ranges = block(boxes[hits, 1:]).tolist()
    else:
        ranges = [[0, X.shape[0], 0, X.shape[1]]] * len(hits)
    for i, (r0, r1, c0, c1) in zip(hits.tolist(), ranges):
        s = packed.shapes[i]
        rs, cs = slice(r0, r1), slice(c0, c1)
        xb, yb = X[rs, cs], Y[rs, cs]
        if xb.size == 0:
            continue
        mask = _ellipsoid_mask(s, plane, xb, yb) if packed.is_ell[i] else _capsule_mask(s, plane, xb, yb)
        target = labels[rs, cs]
        if s.over is not None:
            lut[:] = False
            lut[list(s.over)] = True
            mask &= lut[target]
        target[mask] = s.label
    return labels


def frame_from_axis(axis: np.ndarray, roll: float) -> np.ndarray:
    """Rows (a, b, c): unit ``axis`` and two perpendicular unit vectors rotated by ``roll`` (rad) about it."""
    a = axis / np.linalg.norm(axis)
    ref = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    b = np.cross(ref, a)
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    cr, sr = np.cos(roll), np.sin(roll)
    return np.stack([a, cr * b + sr * c, -sr * b + cr * c])
