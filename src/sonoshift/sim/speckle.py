"""Random scatterers fixed in the slice plane, shared by every scanner profile that images the plane.

Scatterers sit on a fine square grid of the plane (``spacing_cm``): each grid cell holds a complex Gaussian
amplitude and a uniform number that decides whether a tissue of lower scatterer density has a scatterer there.
Drawing a fresh plane for every frame would dominate the run time, so a ``ScattererBank`` draws one large
periodic table once (from an explicit numpy Generator) and every frame reads it through its own random offset:
any geometry that samples the plane sees the same scatterers at the same places.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, eq=False)
class ScattererBank:
    """Periodic tables (N x N, N a power of two): ``z`` complex64 circular Gaussians with E|z|^2 = 1, ``u`` float32
    uniforms in [0, 1), ``g`` float32 standard normals for the slow tissue texture."""

    z: np.ndarray
    u: np.ndarray
    g: np.ndarray

    @property
    def n(self) -> int:
        return self.z.shape[0]


def make_bank(rng: np.random.Generator, n: int = 1024) -> ScattererBank:
    """Draw the tables from ``rng`` (n must be a power of two; 1024 covers 41 cm at 0.04 cm spacing)."""
    if n & (n - 1):
        raise ValueError(f"bank size must be a power of two, got {n}")
    re_im = rng.standard_normal((2, n, n), dtype=np.float32) * np.float32(np.sqrt(0.5))
    z = (re_im[0] + 1j * re_im[1]).astype(np.complex64)
    u = rng.random((n, n), dtype=np.float32)
    g = rng.standard_normal((n, n), dtype=np.float32)
    return ScattererBank(z, u, g)


def _cells(bank: ScattererBank, X: np.ndarray, Y: np.ndarray, key: int, spacing_cm: float) -> np.ndarray:
    mask = bank.n - 1
    ox, oy = key & mask, (key >> 20) & mask
    ix = (np.floor(X * (1.0 / spacing_cm)).astype(np.int64) + ox) & mask
    iy = (np.floor(Y * (1.0 / spacing_cm)).astype(np.int64) + oy) & mask
    return iy * bank.n + ix


def scatterers(
    bank: ScattererBank, X: np.ndarray, Y: np.ndarray, key: int, spacing_cm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scatterers at in-plane positions (X, Y) (cm, equal shapes) of the frame whose offset is ``key`` (int >= 0).

    Returns (z, u) of the ``spacing_cm`` grid cell holding each position: z complex64, u float32 in [0, 1).
    """
    idx = _cells(bank, X, Y, key, spacing_cm)
    return bank.z.ravel()[idx], bank.u.ravel()[idx]


def texture(
    bank: ScattererBank, X: np.ndarray, Y: np.ndarray, key: int, cell_cm: float = 0.6, step: int = 4
) -> np.ndarray:
    """A smooth random field (float32, about unit variance, same shape as X) fixed in the plane.

    Normals on a lattice of ``cell_cm`` are interpolated bilinearly at every ``step``-th sample of (X, Y) and the
    result resized to the full grid (the field varies slowly, so this loses nothing visible).
    """
    xs, ys = X[::step, ::step] / cell_cm, Y[::step, ::step] / cell_cm
    fx, fy = np.floor(xs), np.floor(ys)
    wx, wy = (xs - fx).astype(np.float32), (ys - fy).astype(np.float32)
    flat = bank.g.ravel()
    out = np.zeros(xs.shape, dtype=np.float32)
    mask = bank.n - 1
    ox, oy = (key >> 7) & mask, (key >> 31) & mask
    for dx in (0, 1):
        for dy in (0, 1):
            ix = (fx.astype(np.int64) + dx + ox) & mask
            iy = (fy.astype(np.int64) + dy + oy) & mask
            out += flat[iy * bank.n + ix] * (wx if dx else 1 - wx) * (wy if dy else 1 - wy)
    # Bilinear weights shrink the variance between lattice points; rescale to unit variance.
    out /= np.sqrt(((1 - wx) ** 2 + wx**2) * ((1 - wy) ** 2 + wy**2))
    return cv2.resize(out, (X.shape[1], X.shape[0]), interpolation=cv2.INTER_LINEAR)
