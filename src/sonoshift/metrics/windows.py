"""Sliding-window statistics on image batches: separable Gaussian and box filters, mask handling.

All filters are "valid" (no padding): an (H, W) image filtered with a K x K window gives an
(H - K + 1, W - K + 1) map whose pixel (i, j) is the window over image rows i .. i + K - 1 (columns alike),
anchored at image pixel (i + r, j + r), r = (K - 1) // 2: its centre for odd K, the upper-left pixel of the central
2 x 2 block for even K (``crop_center`` picks these anchors, e.g. to line a mask up with the windows). For odd K
that is exactly scikit-image's ``structural_similarity``, which filters with reflection and then crops r pixels.

Fast CPU path (``uses_opencv``): float32 CPU tensors that need no gradient are filtered with OpenCV's SIMD
``cv2.sepFilter2D`` (the same 1-D taps; box sums with taps of ones). All (H, W) planes are stacked into one tall
(N * H, W) image and filtered with OpenCV's default anchor a = K // 2, so output pixel (i, j) is the window over
rows i - a .. i - a + K - 1 (columns alike); the (H - K + 1, W - K + 1) block starting at (a, a) of each plane is
exactly the valid output (no border pixel, nor a neighbouring plane, ever enters it), so the border mode is
irrelevant. The centred anchor keeps OpenCV's symmetric-kernel fast path. CUDA/MPS tensors, float64 and autograd
stay on the torch path.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # opencv-python-headless is a dependency; the torch path still works without it
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

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
    if k < 1:
        raise SonoshiftError(f"the metric window must be at least 1 pixel wide, got {k}.")
    h, w = x.shape[-2:]
    if h < k or w < k:
        raise SonoshiftError(f"images of {h}x{w} pixels are smaller than the {k}x{k} metric window.")


def uses_opencv(x: torch.Tensor) -> bool:
    """True when ``x`` takes the OpenCV path: float32 on CPU, no gradient needed, OpenCV importable."""
    return (
        cv2 is not None
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and not (x.requires_grad and torch.is_grad_enabled())
    )


def _cv_valid_filter(
    x: torch.Tensor, k: int, taps: torch.Tensor | None, full: torch.Tensor | None = None
) -> torch.Tensor:
    """Valid K x K filtering of the float32 CPU planes (..., H, W) of ``x`` with OpenCV -> (..., H - K + 1, W - K + 1).

    ``taps``: separable 1-D window (Gaussian), or None for a box *sum* (unnormalized). ``full``: optional
    preallocated contiguous float32 buffer of at least ``x.numel()`` values that receives the full-size result
    (the returned tensor is then a view of it); without it a new one is allocated.
    """
    h, w = x.shape[-2:]
    src = x.detach().contiguous().numpy().reshape(-1, w)
    dst_t = torch.empty(x.shape, dtype=torch.float32) if full is None else flat(full, x.shape)
    dst = dst_t.numpy().reshape(-1, w)
    if taps is None:  # box sums as a separable filter of ones: faster than cv2.boxFilter (float64 running sums)
        kern = np.ones((k, 1), dtype=np.float32)
    else:
        kern = taps.detach().to(device="cpu", dtype=torch.float32).numpy().reshape(-1, 1)
    cv2.sepFilter2D(src, cv2.CV_32F, kern, kern, dst=dst, borderType=cv2.BORDER_REPLICATE)
    a = k // 2  # OpenCV's default anchor: output (i, j) is the window over rows i - a .. i - a + K - 1
    return dst_t[..., a : a + h - k + 1, a : a + w - k + 1]


def separable_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid 2-D filtering of every (H, W) plane of ``x`` (..., H, W) with the separable window taps x taps.

    Returns (..., H - K + 1, W - K + 1) where K = len(taps). Float32 CPU tensors without gradient use OpenCV
    (module notes); otherwise K shifted multiply-adds per axis: on CPU this beats conv2d for these thin
    single-channel planes, and stays exact in the order of summation.
    """
    k = taps.numel()
    _check_size(x, k)
    if uses_opencv(x):
        return _cv_valid_filter(x, k, taps).contiguous()
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
    """Valid mean over ``size`` x ``size`` windows of every (H, W) plane of ``x`` -> (..., H - size + 1, W - size + 1).

    Float32 CPU tensors without gradient use OpenCV's box sums (module notes)."""
    _check_size(x, size)
    if uses_opencv(x):
        return torch.mul(_cv_valid_filter(x, size, None), 1.0 / (size * size))  # contiguous, as the torch path
    y = _window_sum_1d(x, size, x.dim() - 1)
    return _window_sum_1d(y, size, x.dim() - 2).mul_(1.0 / (size * size))


def crop_center(x: torch.Tensor, k: int) -> torch.Tensor:
    """The window anchors of (..., H, W) -> (..., H - k + 1, W - k + 1), lined up with a valid K x K filter output.

    Drops (k - 1) // 2 pixels before and k // 2 after along each axis, so pixel (i, j) of the result is pixel
    (i + r, j + r), r = (k - 1) // 2, of ``x``: the centre of the window for odd k, the upper-left pixel of its
    central 2 x 2 block for even k.
    """
    r, s = (k - 1) // 2, k // 2
    return x[..., r : x.shape[-2] - s, r : x.shape[-1] - s]


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


# ---- Allocation-free variants for the batched suite -------------------------------------------------------------
# Fresh multi-megabyte tensors cost page faults (kernel time) on every call; the suite filters into preallocated
# workspace buffers instead. ``fit`` narrows a buffer to the leading extent of a shape, so one buffer serves any
# chunk size and any window.


def fit(buf: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """View of the leading ``shape`` part of workspace ``buf`` (same number of dims, each at least as large)."""
    for d, n in enumerate(shape):
        if buf.shape[d] != n:
            buf = buf.narrow(d, 0, n)
    return buf


def flat(buf: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Contiguous (..., shape) view on the start of workspace ``buf`` (which must hold at least that many values)."""
    n = 1
    for d in shape:
        n *= d
    return buf.view(-1)[:n].view(shape)


def separable_filter_into(x: torch.Tensor, taps: torch.Tensor, tmp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``separable_filter`` written into ``out`` (..., H - K + 1, W - K + 1) with scratch ``tmp`` (..., >= H - K + 1,
    >= W); same taps, same valid output. Returns the result: ``out``, or on the OpenCV path (``uses_opencv``; ``tmp``
    then must hold ``x.numel()`` contiguous values) a non-contiguous view of ``tmp`` (``out`` is left untouched).
    Torch path: vertical pass first (one depthwise convolution for contiguous float32 planes, else K
    multiply-adds into ``tmp``), then K multiply-adds along rows into ``out``."""
    k = taps.numel()
    _check_size(x, k)
    if uses_opencv(x):
        return _cv_valid_filter(x, k, taps, tmp)
    w = [float(v) for v in taps]
    height, length = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    if x.dtype == torch.float32 and x.is_contiguous():
        y = _columns_filter(x, taps)
    else:
        y = fit(tmp, (*x.shape[:-2], height, x.shape[-1]))
        torch.mul(x[..., 0:height, :], w[0], out=y)
        for i in range(1, k):
            y.add_(x[..., i : i + height, :], alpha=w[i])
    torch.mul(y[..., 0:length], w[0], out=out)
    for i in range(1, k):
        out.add_(y[..., i : i + length], alpha=w[i])
    return out


def _columns_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid filtering of contiguous (..., H, W) planes along H with ``taps`` -> new (..., H - K + 1, W) tensor.

    The planes are viewed as channels-last images with one channel per column (no copy), so the whole vertical
    pass is one depthwise convolution: a single fused pass instead of K multiply-adds over the stack.
    """
    k, (h, w) = taps.numel(), x.shape[-2:]
    n = x.numel() // (h * w)
    weight = taps.to(x.dtype).view(1, 1, k, 1).expand(w, 1, k, 1).contiguous()
    y = torch.nn.functional.conv2d(x.as_strided((n, w, h, 1), (h * w, 1, w, w)), weight, groups=w)
    return y.permute(0, 2, 3, 1).reshape(*x.shape[:-2], h - k + 1, w)


def _window_sum_1d_into(
    x: torch.Tensor, k: int, dim: int, out: torch.Tensor, scratch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``_window_sum_1d`` (same doubling, same order of summation) into ``out``; ``scratch``: two buffers at least
    as large as ``x``."""
    n = x.shape[dim]
    pending: torch.Tensor | None = None  # first part, still a view of ``x`` (never overwritten)
    started = False
    done, block, size, turn = 0, x, 1, 0
    while True:
        if k & size:
            part = block.narrow(dim, done, n - k + 1)
            if started:
                out.add_(part)
            elif pending is not None:
                torch.add(pending, part, out=out)
                started = True
            elif block is x and k != size:
                pending = part
            else:
                out.copy_(part)
                started = True
            done += size
        if size * 2 > k:
            break
        m = block.shape[dim]
        shape = list(block.shape)
        shape[dim] = m - size
        nxt = fit(scratch[turn], shape)
        turn ^= 1
        torch.add(block.narrow(dim, 0, m - size), block.narrow(dim, size, m - size), out=nxt)
        block, size = nxt, size * 2
    return out


def box_sum_into(
    x: torch.Tensor, size: int, tmp: torch.Tensor, out: torch.Tensor, scratch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Valid window *sums* (not means) over ``size`` x ``size`` boxes of (..., H, W) into ``out``; ``tmp`` holds the
    (..., H - size + 1, W) column sums (one depthwise convolution instead for contiguous float32 planes); ``scratch``:
    two buffers at least as large as ``x``. Returns the result: ``out``, or on the OpenCV path (``uses_opencv``)
    a non-contiguous view of ``tmp`` (which then must hold ``x.numel()`` contiguous values)."""
    _check_size(x, size)
    if uses_opencv(x):
        return _cv_valid_filter(x, size, None, tmp)
    d = x.dim()
    if x.dtype == torch.float32 and x.is_contiguous():
        y = _columns_filter(x, torch.ones(size, dtype=x.dtype, device=x.device))
    else:
        y = _window_sum_1d_into(x, size, d - 2, fit(tmp, (*x.shape[:-2], x.shape[-2] - size + 1, x.shape[-1])), scratch)
    return _window_sum_1d_into(y, size, d - 1, out, scratch)
