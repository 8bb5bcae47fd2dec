"""Memorization guard: is a synthetic image a near-copy of a training image?

The guard of ``evaluate-synth`` (:func:`copy_guard`) works on pixels, shift-tolerant: each image is
area-downsampled to ``size`` x ``size`` (32) and L2-normalised, and the distance of a query to a training image is
the smallest over the training image shifted by up to ``max_shift`` (1) pixels at full resolution (borders filled
with black). Why not the judges' embedding: the plane classifier's pooled features are trained to forget
everything but the plane, so on the simulator a copy of a training frame with 1% noise and a 1-px shift lies as
far from its source as frames of other patients do (21% of planted copies flagged, its own source the nearest
frame for only 18%); pixel distance without the shift tolerance fails the same way (a 1-px shift moves the whole
fan edge: 20% flagged); shift-tolerant pixels flag 100%.

The embedding functions below (:func:`normalise`, :func:`nearest`, :func:`calibrate_threshold`) serve any
feature space. Distance: Euclidean distance between L2-normalised vectors (0 = same direction, at most 2). Threshold,
calibrated on the REAL training images: for every image, the distance to its nearest neighbour among images of
OTHER patients (which also removes neighbouring cine frames, always the same patient), after removing exact
duplicates (pairs at distance < ``dup_eps``, e.g. the same file stored twice under two patient ids); the
threshold is the ``percentile`` (default 1st) of those nearest-neighbour distances. A synthetic image is a
near-copy when its nearest training image is closer than the threshold. :func:`planted_copies` validates the
threshold: training images copied with a mild perturbation should be flagged (target >= 95%).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def normalise(f: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (float32)."""
    return F.normalize(f.float(), dim=1)


def exact_cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, M) of rows, computed in float64 and returned as float32: cdist's matrix-product path
    loses ~1e-3 to cancellation in float32, so an exact copy would not read as 0, nor a duplicate as < 1e-6, on
    every CPU."""
    return torch.cdist(a.double(), b.double()).float()


def nearest(query: torch.Tensor, ref: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """For normalised rows of ``query`` (N, D), the nearest row of ``ref`` (M, D): (distances (N,), indices)."""
    ds, ids = [], []
    ref = ref.double()  # once, not per chunk (exact_cdist keeps a float64 tensor as it is)
    for i in range(0, query.shape[0], chunk):
        d = exact_cdist(query[i:i + chunk], ref)
        v, k = d.min(dim=1)
        ds.append(v)
        ids.append(k)
    return torch.cat(ds), torch.cat(ids)


def calibrate_threshold(
    train: torch.Tensor, patients: Sequence[str], *, percentile: float = 1.0, dup_eps: float = 1e-6,
    chunk: int = 512,
) -> dict[str, float]:
    """Threshold from normalised training embeddings ``train`` (M, D) and their patient ids ->
    {threshold, n_images, n_duplicate_pairs_removed, median_nn}."""
    pid = np.asarray([str(p) for p in patients])
    codes = torch.from_numpy(np.unique(pid, return_inverse=True)[1])
    nn_d = []
    dup = 0
    train64 = train.double()
    for i in range(0, train.shape[0], chunk):
        d = exact_cdist(train64[i:i + chunk], train64)
        same = codes[i:i + chunk, None] == codes[None, :]
        is_dup = (d < dup_eps) & ~same
        dup += int(is_dup.sum())
        d = d.masked_fill(same | is_dup, float("inf"))
        nn_d.append(d.min(dim=1).values)
    v = torch.cat(nn_d)
    v = v[torch.isfinite(v)]
    return {"threshold": float(np.percentile(v.numpy(), percentile)), "n_images": int(v.numel()),
            "n_duplicate_pairs_removed": dup // 2, "median_nn": float(v.median()), "percentile": percentile}


def perturb(x: torch.Tensor, generator: torch.Generator, noise: float = 0.02, max_shift: int = 1) -> torch.Tensor:
    """A mildly changed copy of images (N, 1, H, W) in [-1, 1]: Gaussian noise of std ``noise`` (in [-1, 1]
    units, 1% of the range) and a shift of up to ``max_shift`` pixels (uncovered pixels black, as a frame moved
    inside its field of view)."""
    n = x.shape[0]
    out = x + noise * torch.randn(x.shape, generator=generator)
    s = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    for i in range(n):
        out[i] = shift(out[i], int(s[i, 0]), int(s[i, 1]))
    return out.clamp(-1, 1)


def shift(x: torch.Tensor, dy: int, dx: int, fill: float = -1.0) -> torch.Tensor:
    """Images (N, C, H, W) moved down by ``dy`` and right by ``dx`` pixels; uncovered pixels become ``fill``."""
    out = torch.full_like(x, fill)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def pixel_features(x: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Images (N, 1, H, W) -> L2-normalised area-downsampled pixels (N, size * size)."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="area")
    return normalise(x.flatten(1))


class CopyGuard:
    """Shift-tolerant pixel nearest neighbours among training images, with a threshold calibrated on them.

    ``threshold`` = the ``percentile`` of every training image's nearest-neighbour distance among training
    images of OTHER patients (neighbouring cine frames are the same patient), after removing exact duplicates
    (distance < ``dup_eps``); a query closer than it to some training image is a near-copy."""

    def __init__(self, train: torch.Tensor, patients: Sequence[str], *, size: int = 32, max_shift: int = 1,
                 percentile: float = 1.0, dup_eps: float = 1e-6, chunk: int = 512) -> None:
        self.size, self.max_shift, self.chunk, self.dup_eps = size, max_shift, chunk, dup_eps
        shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
        self.ref = torch.stack([pixel_features(shift(train, dy, dx), size) for dy, dx in shifts]).double()  # (S, N, D)
        self.codes = torch.from_numpy(np.unique(np.asarray([str(p) for p in patients]), return_inverse=True)[1])
        d, _, dup = self._nearest(pixel_features(train, size), own_codes=self.codes)
        v = d[torch.isfinite(d)]
        self.calibration = {"threshold": float(np.percentile(v.numpy(), percentile)), "n_images": int(v.numel()),
                            "n_duplicate_pairs_removed": dup // 2, "median_nn": float(v.median()),
                            "percentile": percentile, "distance": f"shift-tolerant pixels ({size} px, "
                            f"shifts <= {max_shift} px at full size, L2-normalised)"}
        self.threshold = self.calibration["threshold"]

    def _nearest(self, q: torch.Tensor, own_codes: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
        ds, ids, dup = [], [], 0
        for i in range(0, q.shape[0], self.chunk):
            d = torch.stack([exact_cdist(q[i:i + self.chunk], r) for r in self.ref]).min(0).values
            if own_codes is not None:
                same = own_codes[i:i + self.chunk, None] == self.codes[None, :]
                is_dup = (d < self.dup_eps) & ~same
                dup += int(is_dup.sum())
                d = d.masked_fill(same | is_dup, float("inf"))
            v, k = d.min(dim=1)
            ds.append(v)
            ids.append(k)
        return torch.cat(ds), torch.cat(ids), dup

    def nearest(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance (N,), index of the nearest training image (N,)) for images (N, 1, H, W)."""
        d, k, _ = self._nearest(pixel_features(images, self.size))
        return d, k


__all__ = ["CopyGuard", "calibrate_threshold", "nearest", "normalise", "perturb", "pixel_features", "shift"]
