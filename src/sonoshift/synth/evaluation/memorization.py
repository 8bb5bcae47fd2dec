"""Memorization guard: is a synthetic image a near-copy of a training image?

Distance: Euclidean distance between L2-normalised embeddings (0 = same direction, at most 2). Threshold,
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


def nearest(query: torch.Tensor, ref: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """For normalised rows of ``query`` (N, D), the nearest row of ``ref`` (M, D): (distances (N,), indices)."""
    ds, ids = [], []
    for i in range(0, query.shape[0], chunk):
        d = torch.cdist(query[i:i + chunk], ref)
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
    for i in range(0, train.shape[0], chunk):
        d = torch.cdist(train[i:i + chunk], train)
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
    units, 1% of the range) and a shift of up to ``max_shift`` pixels."""
    n = x.shape[0]
    out = x + noise * torch.randn(x.shape, generator=generator)
    s = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    for i in range(n):
        out[i] = torch.roll(out[i], shifts=(int(s[i, 0]), int(s[i, 1])), dims=(-2, -1))
    return out.clamp(-1, 1)


__all__ = ["calibrate_threshold", "nearest", "normalise", "perturb"]
