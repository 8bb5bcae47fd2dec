"""Histogram metrics: mutual information (joint histogram) and the Bhattacharyya coefficient.

Intensities in [0, 1] fall into ``bins`` equal bins over [0, 1] (bin = floor(x * bins), the value 1 in the last
bin; values outside [0, 1] are clipped). Histograms are built for the whole batch at once with ``torch.bincount``;
with a mask only in-mask pixels are counted, and a pair with an empty mask gets NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from sonoshift.metrics._inputs import as_batch, prepare_pair


def bin_index(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin of each intensity of ``x`` (values in [0, 1]) among ``bins`` equal bins -> int64 of the same shape."""
    return (x * bins).floor_().clamp_(0, bins - 1).long()


def _counts(idx: torch.Tensor, n_bins: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-image histograms (B, n_bins) of bin indices idx (B, H, W) in [0, n_bins), masked by ``mask``."""
    bsz = idx.shape[0]
    offset = (torch.arange(bsz, device=idx.device) * n_bins).view(-1, 1, 1)
    flat = (idx + offset).reshape(-1)
    if mask is None:
        c = torch.bincount(flat, minlength=bsz * n_bins)
    else:
        c = torch.bincount(flat[mask.reshape(-1)], minlength=bsz * n_bins)
    return c.view(bsz, n_bins).to(torch.float64)


def _entropy(p: torch.Tensor, dim: tuple[int, ...] | int) -> torch.Tensor:
    """Shannon entropy in nats of probability tables along ``dim`` (0 log 0 = 0)."""
    return -torch.special.xlogy(p, p).sum(dim=dim)


def joint_histogram(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, bins: int = 64
) -> torch.Tensor:
    """Joint intensity counts per pair -> (B, bins, bins) float64; rows index a's bin, columns b's bin."""
    a, b, mask = prepare_pair(a, b, mask)
    idx = bin_index(a, bins) * bins + bin_index(b, bins)
    return _counts(idx, bins * bins, mask).view(-1, bins, bins)


def mi(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    bins: int = 64,
    normalized: bool = True,
) -> torch.Tensor:
    """Mutual information per pair from a ``bins`` x ``bins`` joint histogram -> (B,) float64.

    ``normalized`` (default): 2 I(A;B) / (H(A) + H(B)) in [0, 1], 1 when each image determines the other; two
    constant images (H(A) + H(B) = 0) score 1. Otherwise I(A;B) in bits (>= 0).
    """
    return mi_from_joint(joint_histogram(a, b, mask, bins), normalized)


def mi_from_joint(joint: torch.Tensor, normalized: bool = True) -> torch.Tensor:
    """Mutual information from joint counts (B, bins, bins); see ``mi`` for the two variants -> (B,) float64."""
    n = joint.sum(dim=(1, 2))
    p = joint / n.clamp_min(1).view(-1, 1, 1)
    h_ab = _entropy(p, (1, 2))
    h_a = _entropy(p.sum(2), 1)
    h_b = _entropy(p.sum(1), 1)
    info = (h_a + h_b - h_ab).clamp_min(0)
    if normalized:
        hs = h_a + h_b
        out = torch.where(hs > 0, 2 * info / hs.clamp_min(1e-300), torch.ones_like(hs))
    else:
        out = info / math.log(2)
    return torch.where(n > 0, out, torch.full_like(out, float("nan")))


def histograms(x: torch.Tensor, mask: torch.Tensor | None = None, bins: int = 256) -> torch.Tensor:
    """Intensity counts per image -> (B, bins) float64. x: (B, 1, H, W) or (B, H, W) in [0, 1]."""
    x = as_batch(x, "image batch")
    if mask is not None:
        mask = mask[:, 0] if mask.dim() == 4 else mask
        mask = mask.to(device=x.device, dtype=torch.bool)
    return _counts(bin_index(x, bins), bins, mask)


def bc_from_counts(ca: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Bhattacharyya coefficient sum_k sqrt(p_k q_k) of count tables (..., bins) -> (...); NaN if one is empty."""
    na, nb = ca.sum(-1), cb.sum(-1)
    out = (ca / na.clamp_min(1).unsqueeze(-1) * cb / nb.clamp_min(1).unsqueeze(-1)).sqrt().sum(-1)
    out = out.clamp_max(1.0)  # identical histograms can sum to 1 + 1 ulp
    return torch.where((na > 0) & (nb > 0), out, torch.full_like(out, float("nan")))


def bc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, bins: int = 256) -> torch.Tensor:
    """Bhattacharyya coefficient of the two intensity histograms per pair -> (B,) float64 in [0, 1]."""
    a, b, mask = prepare_pair(a, b, mask)
    return bc_from_counts(histograms(a, mask, bins), histograms(b, mask, bins))


class PooledHistogram:
    """Accumulates one intensity histogram over many images (chunk by chunk), for dataset-level BC."""

    def __init__(self, bins: int = 256) -> None:
        self.bins = bins
        self.counts = torch.zeros(bins, dtype=torch.float64)

    def add(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch (B, 1, H, W) or (B, H, W) in [0, 1], optionally masked."""
        self.counts += histograms(x, mask, self.bins).sum(0).cpu()


def bc_dataset(
    set_a: Iterable[torch.Tensor] | torch.Tensor,
    set_b: Iterable[torch.Tensor] | torch.Tensor,
    bins: int = 256,
) -> float:
    """Dataset-level BC: the coefficient between the pooled histograms of two image sets (any sizes).

    Each set is a batch tensor or an iterable of batches (images in [0, 1]); returns a float in [0, 1].
    """
    pooled = []
    for s in (set_a, set_b):
        h = PooledHistogram(bins)
        for chunk in [s] if isinstance(s, torch.Tensor) else s:
            h.add(chunk)
        pooled.append(h.counts)
    return float(bc_from_counts(pooled[0], pooled[1]))
