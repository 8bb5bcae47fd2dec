"""All non-learned pair metrics in one pass, in chunks (what ``evaluate`` and the benchmark call).

SSIM, CSS and LNCC share one stack of moment planes; PSNR and MAE share one difference; MI and BC share one
bincount. Every metric returns one float64 value per pair, equal (to float rounding) to the separate functions.

Speed notes (CPU): each worker thread reuses one preallocated workspace (fresh multi-megabyte tensors cost page
faults on every chunk); float32 stacks are filtered by OpenCV (``windows.uses_opencv``: one ``cv2.sepFilter2D``
call per window over the whole stack, about 2x the torch filters), other dtypes/devices by torch (the vertical
passes of float32 stacks as single depthwise convolutions, ``windows._columns_filter``); the window statistics
are turned into per-pair means in place, with as few full-map passes as the formulas allow; histogram indices
are int32.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

import torch

from sonoshift.metrics._inputs import prepare_pair
from sonoshift.metrics.histogram import (
    _counts,
    bc_from_counts,
    bin_index,
    joint_histogram,
    mi_from_joint,
)
from sonoshift.metrics.lncc import LNCC_EPS
from sonoshift.metrics.ssim import C1, C2, C3
from sonoshift.metrics.windows import (
    box_sum_into,
    crop_center,
    cv2,
    flat,
    gaussian_kernel1d,
    separable_filter_into,
    uses_opencv,
)

PAIR_METRICS = ("psnr", "mae", "ssim", "css", "lncc", "mi", "bc")


class _Workspace:
    """Preallocated planes for one worker: moment stack, filter output and scratch, map temporaries, histogram indices.

    Sized for the largest chunk; a smaller chunk uses contiguous views on their start (``windows.flat``). Reusing
    them avoids the page faults that fresh multi-megabyte tensors cost on every chunk. On the OpenCV path ``tmp``
    receives the full-size filter outputs and ``filt`` / ``scratch`` stay untouched (never paged in).
    """

    def __init__(self, planes: int, bsz: int, h: int, w: int, like: torch.Tensor) -> None:
        def new(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=like.dtype, device=like.device)

        self.stack, self.tmp, self.filt = new(planes, bsz, h, w), new(planes, bsz, h, w), new(planes, bsz, h, w)
        self.scratch = (new(planes, bsz, h, w), new(planes, bsz, h, w))
        self.t1, self.t2 = new(bsz, h, w), new(bsz, h, w)
        self.hist_f = new(2, bsz, h, w)
        self.hist_i = torch.empty((2, bsz, h, w), dtype=torch.int32, device=like.device)
        self.hist_t = torch.empty((bsz, h, w), dtype=torch.int32, device=like.device)


def _msum(x: torch.Tensor, mf: torch.Tensor | None) -> torch.Tensor:
    """Sum over the last two dims of (B, h, w), weighted by the 0/1 mask ``mf`` when given (``x`` is overwritten)."""
    return x.sum(dim=(-2, -1)) if mf is None else x.mul_(mf).sum(dim=(-2, -1))


def _mean(total: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """total / count, NaN where a mask count is 0 (as ``windows.masked_mean``)."""
    if isinstance(count, int):
        return total / count
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def _ssim_css(
    f: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, mf: torch.Tensor | None, count, variant: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and CSS per pair from Gaussian window means f = (5, B, h, w) [mu_a, mu_b, E a^2, E b^2, E ab].

    Same formulas as ``ssim.maps_from_moments``, computed in place (``f``, ``t1``, ``t2`` are overwritten).
    """
    mu_a, mu_b, va, vb, cov = f.unbind(0)
    c1 = torch.tensor(C1, dtype=f.dtype, device=f.device)
    c2 = torch.tensor(C2, dtype=f.dtype, device=f.device)
    cov.addcmul_(mu_a, mu_b, value=-1)
    va.addcmul_(mu_a, mu_a, value=-1)
    vb.addcmul_(mu_b, mu_b, value=-1)
    lum = torch.addcmul(c1, mu_a, mu_b, value=2, out=t1)  # 2 mu_a mu_b + C1
    den = torch.addcmul(c1, mu_a, mu_a, out=t2).addcmul_(mu_b, mu_b)  # mu_a^2 + mu_b^2 + C1
    lum.div_(den)
    den = torch.add(va, vb, out=t2).add_(C2)  # var_a + var_b + C2
    ssim_map = torch.add(c2, cov, alpha=2, out=mu_a).div_(den).mul_(lum)
    ssim = _mean(_msum(ssim_map, mf), count)
    sd_ab = torch.mul(va.clamp_min_(0), vb.clamp_min_(0), out=mu_b).sqrt_()
    con = torch.add(c2, sd_ab, alpha=2, out=va).div_(den)
    struct = cov.add_(C3).div_(sd_ab.add_(C3))
    if variant == "mean":
        css = 0.5 * (_mean(_msum(con, mf), count) + _mean(_msum(struct, mf), count))
    else:
        css = _mean(_msum(con.mul_(struct), mf), count)
    return ssim, css


def _lncc(f: torch.Tensor, n: float, mf: torch.Tensor | None, count) -> torch.Tensor:
    """Mean LNCC per pair from window moments scaled by ``n``: f = (5, B, h, w) [n mu_a, n mu_b, n E a^2, n E b^2,
    n E ab] (box sums with n = window area, or means with n = 1). Same formula as ``lncc.lncc_from_moments``
    with numerator and denominator scaled by n; ``f`` is overwritten."""
    sa, sb, va, vb, cov = f.unbind(0)
    eps = n * LNCC_EPS
    va.addcmul_(sa, sa, value=-1 / n)
    vb.addcmul_(sb, sb, value=-1 / n)
    cov.addcmul_(sa, sb, value=-1 / n)
    inv = torch.mul(va.clamp_min_(0).add_(eps), vb.clamp_min_(0).add_(eps), out=sa).rsqrt_()
    return _mean(_msum(cov.add_(eps).mul_(inv), mf), count)


def _fill_stack(stack: torch.Tensor, a: torch.Tensor, b: torch.Tensor, mf: torch.Tensor | None) -> None:
    """The planes of ``windows.moment_stack`` written into ``stack`` (5 or 6, B, H, W)."""
    if mf is None:
        sa, sb, saa, sbb, sab = stack.unbind(0)
        sa.copy_(a)
        sb.copy_(b)
    else:
        sm, sa, sb, saa, sbb, sab = stack.unbind(0)
        sm.copy_(mf)
        torch.mul(a, mf, out=sa)
        torch.mul(b, mf, out=sb)
    torch.mul(sa, a, out=saa)
    torch.mul(sb, b, out=sbb)
    torch.mul(sa, b, out=sab)


def _normalize(f: torch.Tensor) -> torch.Tensor:
    """Masked window sums (6, B, h, w) [w, w a, ...] -> window means (5, B, h, w) (normalized convolution)."""
    wsum = f[0].clamp_min_(torch.finfo(f.dtype).tiny).reciprocal_()
    return f[1:].mul_(wsum)


def _histogram_metrics(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None, mi_bins: int, mi_normalized: bool, ws: _Workspace
) -> dict[str, torch.Tensor]:
    """MI (``mi_bins`` x ``mi_bins`` joint histogram) and BC (256-bin histograms) with one ``bincount``.

    Bins as ``histogram.bin_index``: floor(x * 256) clipped to [0, 255]. When ``mi_bins`` divides 256 (a power of
    two), floor(x * mi_bins) is that 256-bin index >> log2(256 / mi_bins), exactly, so one table per pair of (a's
    256-bin index, b's ``mi_bins`` index) gives both a's 256-bin histogram (row sums) and MI's joint histogram
    (sums of row blocks); b's 256-bin histogram is counted alongside. Every table of every pair gets its own index
    range, so a single count builds them all. Indices are int32 (half the memory traffic of int64; converting the
    clipped, non-negative float x * 256 truncates, which is the floor).
    """
    bsz, h, w = a.shape
    nj = 256 * mi_bins
    if 256 % mi_bins != 0 or bsz * (nj + 256) >= 2**31:
        counts_a = _counts(bin_index(a, 256), 256, mask)
        counts_b = _counts(bin_index(b, 256), 256, mask)
        return {
            "bc": bc_from_counts(counts_a, counts_b),
            "mi": mi_from_joint(joint_histogram(a, b, mask, mi_bins), mi_normalized),
        }
    f = flat(ws.hist_f, (2, bsz, h, w))
    torch.mul(a, 256, out=f[0]).clamp_(0, 255)
    torch.mul(b, 256, out=f[1]).clamp_(0, 255)
    idx = flat(ws.hist_i, f.shape).copy_(f)  # (2, B, H, W) int32: [a's 256-bin index, b's 256-bin index]
    ia, ib = idx.unbind(0)
    shift = (256 // mi_bins).bit_length() - 1
    ia.mul_(mi_bins).add_(torch.bitwise_right_shift(ib, shift, out=flat(ws.hist_t, a.shape)))
    pair = torch.arange(bsz, dtype=torch.int32, device=idx.device)
    idx.add_(torch.stack([pair * nj, bsz * nj + pair * 256]).view(2, bsz, 1, 1))
    cells = idx.view(-1) if mask is None else idx.view(2, -1)[:, mask.reshape(-1)].reshape(-1)
    counts = torch.bincount(cells, minlength=bsz * (nj + 256)).to(torch.float64)
    table = counts[: bsz * nj].view(bsz, 256, mi_bins)
    joint = table.view(bsz, mi_bins, 256 // mi_bins, mi_bins).sum(2)
    bc = bc_from_counts(table.sum(2), counts[bsz * nj :].view(bsz, 256))
    return {"bc": bc, "mi": mi_from_joint(joint, mi_normalized)}


def _chunk_metrics(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None,
    mi_bins: int,
    mi_normalized: bool,
    css_variant: str,
    lncc_window: int,
    ws: _Workspace,
) -> dict[str, torch.Tensor]:
    bsz, h, w = a.shape
    mf = None if mask is None else mask.to(a.dtype)
    t1, t2 = flat(ws.t1, a.shape), flat(ws.t2, a.shape)
    diff = torch.sub(a, b, out=t1)
    sq = torch.mul(diff, diff, out=t2)
    count = h * w if mf is None else mf.sum(dim=(-2, -1))
    vals = {"psnr": 10.0 * torch.log10(1.0 / _mean(_msum(sq, mf), count))}
    vals["mae"] = _mean(_msum(diff.abs_(), mf), count)

    planes = 5 if mf is None else 6
    stack = flat(ws.stack, (planes, bsz, h, w))
    _fill_stack(stack, a, b, mf)

    gauss = gaussian_kernel1d(1.5, 3.5, dtype=a.dtype, device=a.device)
    k = gauss.numel()
    f = separable_filter_into(stack, gauss, ws.tmp, flat(ws.filt, (planes, bsz, h - k + 1, w - k + 1)))
    cm = None if mf is None else crop_center(mf, k)
    cnt = (h - k + 1) * (w - k + 1) if cm is None else cm.sum(dim=(-2, -1))
    mt1, mt2 = flat(ws.t1, f.shape[1:]), flat(ws.t2, f.shape[1:])
    vals["ssim"], vals["css"] = _ssim_css(f if mf is None else _normalize(f), mt1, mt2, cm, cnt, css_variant)

    k = lncc_window
    f = box_sum_into(stack, k, ws.tmp, flat(ws.filt, (planes, bsz, h - k + 1, w - k + 1)), ws.scratch)
    cm = None if mf is None else crop_center(mf, k)
    cnt = (h - k + 1) * (w - k + 1) if cm is None else cm.sum(dim=(-2, -1))
    vals["lncc"] = _lncc(f, float(k * k), None, cnt) if mf is None else _lncc(_normalize(f), 1.0, cm, cnt)

    vals.update(_histogram_metrics(a, b, mask, mi_bins, mi_normalized, ws))
    return vals


@contextmanager
def _single_threaded_opencv(active: bool) -> Iterator[None]:
    """While ``active``, OpenCV runs each filter on the calling thread (restored after): parallelism comes from the
    worker threads, and OpenCV's own pool on top of them only adds synchronization cost (measured on 2 cores)."""
    if not active or cv2 is None:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def pair_metrics(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    mi_bins: int = 64,
    mi_normalized: bool = True,
    css_variant: Literal["mean", "product"] = "mean",
    lncc_window: int = 9,
    chunk: int = 4,
    workers: int = 1,
) -> dict[str, torch.Tensor]:
    """psnr, mae, ssim, css, lncc, mi, bc for image pairs in [0, 1] -> {name: (B,) float64 tensor on CPU}.

    a, b: (B, 1, H, W) or (B, H, W); mask: optional bool of the same spatial shape. Work is done ``chunk``
    pairs at a time (each worker holds a workspace of about 40 * chunk * H * W * 4 bytes for float32), by
    ``workers`` threads; on CPU, ``workers`` = cores with ``torch.set_num_threads(1)`` is the fastest setting.
    Float32 CPU inputs take the OpenCV filter path (``windows.uses_opencv``), with OpenCV held to one thread per
    worker during the call; float64 and GPU inputs the torch path.
    """
    if css_variant not in ("mean", "product"):
        raise ValueError(f"css variant must be 'mean' or 'product', got {css_variant!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    a, b, mask = prepare_pair(a, b, mask)
    starts = list(range(0, a.shape[0], chunk))
    local = threading.local()
    planes = 5 if mask is None else 6
    size = min(chunk, a.shape[0])

    def run(i: int) -> dict[str, torch.Tensor]:
        ws = getattr(local, "ws", None)
        if ws is None:
            ws = local.ws = _Workspace(planes, size, a.shape[1], a.shape[2], a)
        cm = None if mask is None else mask[i : i + chunk]
        return _chunk_metrics(
            a[i : i + chunk].contiguous(), b[i : i + chunk].contiguous(), cm, mi_bins, mi_normalized, css_variant,
            lncc_window, ws,
        )  # fmt: skip

    with _single_threaded_opencv(uses_opencv(a)):
        if workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:  # torch ops and OpenCV filters release the GIL
                parts = list(pool.map(run, starts))
        else:
            parts = [run(i) for i in starts]
    return {
        k: torch.cat([p[k].to(torch.float64).cpu() for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
        for k in PAIR_METRICS
    }
