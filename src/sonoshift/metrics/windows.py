"""Sliding-window statistics on image batches: separable Gaussian and box filters, mask handling.

All filters are "valid" (no padding): an (H, W) image filtered with a K x K window gives an
(H - K + 1, W - K + 1) map whose pixel (i, j) is the window centred on image pixel (i + r, j + r), r = (K - 1) // 2.
That is exactly scikit-image's ``structural_similarity``, which filters with reflection and then crops r pixels.
"""

from __future__ import annotations

import torch

from sonoshift.errors import SonoshiftError


def gaussian_kernel1d(
    sigma: float = 1.5, truncate: float = 3.5, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """Normalized 1-D Gaussian taps, radius ``int(truncate * sigma + 0.5)`` (scipy.ndimage's rule).

    sigma 1.5 and truncate 3.5 give 11 taps, the SSIM window.
    """
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def _check_size(x: torch.Tensor, k: int) -> None:
    h, w = x.shape[-2:]
    if h < k or w < k:
        raise SonoshiftError(f"images of {h}x{w} pixels are smaller than the {k}x{k} metric window.")


def separable_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid 2-D filtering of every (H, W) plane of ``x`` (..., H, W) with the separable window taps x taps.

    Returns (..., H - K + 1, W - K + 1) where K = len(taps). Written as K shifted multiply-adds per axis: on CPU
    this beats conv2d for these thin single-channel planes, and stays exact in the order of summation.
    """
    k = taps.numel()
    _check_size(x, k)
    w = [float(v) for v in taps]
    length = x.shape[-1] - k + 1
    y = x[..., :, 0:length] * w[0]
    for i in range(1, k):
        y.add_(x[..., :, i : i + length], alpha=w[i])
    height = x.shape[-2] - k + 1
    z = y[..., 0:height, :] * w[0]
    for i in range(1, k):
        z.add_(y[..., i : i + height, :], alpha=w[i])
    return z


def _window_sum_1d(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums of ``k`` consecutive values along ``dim`` (valid), by doubling: about 2 log2(k) passes, not k."""
    n = x.shape[dim]
    out: torch.Tensor | None = None
    done = 0  # length already summed into ``out``
    block, size = x, 1  # ``block`` holds sums of ``size`` consecutive values
    while True:
        if k & size:
            part = block.narrow(dim, done, n - k + 1)
            out = part.clone() if out is None else out.add_(part)
            done += size
        if size * 2 > k:
            break
        m = block.shape[dim]
        block = block.narrow(dim, 0, m - size) + block.narrow(dim, size, m - size)
        size *= 2
    assert out is not None and done == k
    return out


def box_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Valid mean over ``size`` x ``size`` windows of every (H, W) plane of ``x`` -> (..., H - size + 1, W - size + 1)."""
    _check_size(x, size)
    y = _window_sum_1d(x, size, x.dim() - 1)
    return _window_sum_1d(y, size, x.dim() - 2).mul_(1.0 / (size * size))


def crop_center(x: torch.Tensor, k: int) -> torch.Tensor:
    """Drop the (k - 1) // 2 border pixels of (..., H, W) so ``x`` lines up with a valid K x K filter output."""
    r = (k - 1) // 2
    return x[..., r : x.shape[-2] - r, r : x.shape[-1] - r]


def moment_stack(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The planes whose local means give windowed moments: (B, 5, H, W) [a, b, a^2, b^2, ab], or with a mask
    (B, 6, H, W) [m, am, bm, a^2 m, b^2 m, abm] (m = mask as 0/1)."""
    if mask is None:
        return torch.stack([a, b, a * a, b * b, a * b], dim=1)
    m = mask.to(a.dtype)
    am, bm = a * m, b * m
    return torch.stack([m, am, bm, am * a, bm * b, am * b], dim=1)


def window_mean(x: torch.Tensor, window: torch.Tensor | int) -> torch.Tensor:
    """Valid window means: Gaussian (or any separable) ``taps`` tensor, or an int for a box of that size."""
    return box_filter(x, window) if isinstance(window, int) else separable_filter(x, window)


def window_size(window: torch.Tensor | int) -> int:
    """Side length of a window given as taps or as a box size."""
    return window if isinstance(window, int) else window.numel()


def moments_from_stack(
    stack: torch.Tensor, window: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Filter a ``moment_stack`` with ``window`` (Gaussian taps, or an int box size) -> (mu_a, mu_b, var_a,
    var_b, cov), population statistics over the window, each (B, H - K + 1, W - K + 1)."""
    f = window_mean(stack, window)
    if stack.shape[1] == 6:
        wsum = f[:, 0].clamp_min(torch.finfo(f.dtype).tiny)
        f = f[:, 1:] / wsum.unsqueeze(1)
    mu_a, mu_b, aa, bb, ab = f.unbind(1)
    return mu_a, mu_b, aa.sub_(mu_a * mu_a), bb.sub_(mu_b * mu_b), ab.sub_(mu_a * mu_b)


def window_moments(
    a: torch.Tensor, b: torch.Tensor, taps: torch.Tensor | int, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local weighted means and population (co)variances of two image batches (B, H, W).

    With a mask (B, H, W, bool) only in-mask pixels enter each window (normalized convolution: the window weights
    of out-of-mask pixels are set to zero and the rest renormalized). Returns (mu_a, mu_b, var_a, var_b, cov),
    each (B, H - K + 1, W - K + 1).
    """
    return moments_from_stack(moment_stack(a, b, mask), taps)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last two dims of (B, H, W), only where ``mask`` (B, H, W) is true; NaN for an empty mask."""
    if mask is None:
        return x.mean(dim=(-2, -1))
    m = mask.to(x.dtype)
    n = m.sum(dim=(-2, -1))
    s = (x * m).sum(dim=(-2, -1))
    return torch.where(n > 0, s / n.clamp_min(1), torch.full_like(s, float("nan")))
