"""Tiny synthetic "heads" for tests and smoke runs: a bright elliptical ring on a noisy background, with its mask."""

from __future__ import annotations

import numpy as np
from skimage.draw import ellipse


def ellipse_images(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, size, size) and their filled-ellipse masks (n, size, size) of 0/1.

    Each ellipse has random centre, semi-axes in [0.15, 0.35] x size and rotation; the ring (skull) is bright,
    the inside a little brighter than the background, and everything carries multiplicative speckle-like noise.
    """
    imgs = np.empty((n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        a, b = rng.uniform(0.15, 0.35, 2) * size
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        rot = rng.uniform(-np.pi, np.pi)
        rr, cc = ellipse(cy, cx, a, b, shape=(size, size), rotation=rot)
        m = np.zeros((size, size), dtype=bool)
        m[rr, cc] = True
        inner = np.zeros_like(m)
        ri, ci = ellipse(cy, cx, max(a - 2, 1), max(b - 2, 1), shape=(size, size), rotation=rot)
        inner[ri, ci] = True
        base = np.full((size, size), 50.0)
        base[m] = 200.0
        base[inner] = 90.0
        img = base * rng.rayleigh(0.8, (size, size)) + rng.normal(0, 8, (size, size))
        imgs[i] = np.clip(img, 0, 255).astype(np.uint8)
        masks[i] = m
    return imgs, masks
