"""All non-learned pair metrics in one pass, in chunks (what ``evaluate`` and the benchmark call).

SSIM, CSS and LNCC share one stack of moment planes; PSNR and MAE share one difference; MI and BC share one
256 x 256 joint histogram. Every metric returns one float64 value per pair, identical to the separate functions.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch

from sonoshift.metrics._inputs import prepare_pair
from sonoshift.metrics.histogram import bc_from_counts, bin_index, joint_histogram, mi_from_joint
from sonoshift.metrics.lncc import LNCC_EPS, lncc_from_moments
from sonoshift.metrics.ssim import css_from_maps, maps_from_moments
from sonoshift.metrics.windows import (
    crop_center,
    gaussian_kernel1d,
    masked_mean,
    moment_stack,
    moments_from_stack,
)

PAIR_METRICS = ("psnr", "mae", "ssim", "css", "lncc", "mi", "bc")


def _chunk_metrics(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None,
    mi_bins: int,
    mi_normalized: bool,
    css_variant: str,
    lncc_window: int,
) -> dict[str, torch.Tensor]:
    a, b, mask = prepare_pair(a, b, mask)
    diff = a - b
    mse = masked_mean(diff * diff, mask)
    vals = {"psnr": 10.0 * torch.log10(1.0 / mse), "mae": masked_mean(diff.abs_(), mask)}
    del diff

    stack = moment_stack(a, b, mask)
    gauss = gaussian_kernel1d(1.5, 3.5, dtype=a.dtype, device=a.device)
    cm = None if mask is None else crop_center(mask, gauss.numel())
    maps = maps_from_moments(*moments_from_stack(stack, gauss), cm)
    vals["ssim"] = masked_mean(maps.ssim, cm)
    vals["css"] = css_from_maps(maps, css_variant)  # type: ignore[arg-type]
    del maps
    _, _, va, vb, cov = moments_from_stack(stack, lncc_window)
    del stack
    cm = None if mask is None else crop_center(mask, lncc_window)
    vals["lncc"] = masked_mean(lncc_from_moments(va, vb, cov, LNCC_EPS), cm)

    # One 256 x 256 joint histogram per pair serves both: its margins are BC's 256-bin histograms, and summing
    # 4 x 4 blocks gives MI's 64 x 64 joint histogram (floor(x * 64) = floor(x * 256) // 4), exactly.
    bsz = a.shape[0]
    idx = bin_index(a, 256).mul_(256).add_(bin_index(b, 256))
    idx += (torch.arange(bsz, device=a.device) * 65536).view(-1, 1, 1)
    flat = idx.reshape(-1) if mask is None else idx.reshape(-1)[mask.reshape(-1)]
    joint = torch.bincount(flat, minlength=bsz * 65536).view(bsz, 256, 256)
    vals["bc"] = bc_from_counts(joint.sum(2).double(), joint.sum(1).double())
    if 256 % mi_bins == 0:
        step = 256 // mi_bins
        jm = joint.view(bsz, mi_bins, step, mi_bins, step).sum(dim=(2, 4)).double()
    else:
        jm = joint_histogram(a, b, mask, mi_bins)
    vals["mi"] = mi_from_joint(jm, mi_normalized)
    return vals


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
    pairs at a time (small chunks keep the planes in cache: about 30 * chunk * H * W * 4 bytes for float32), by
    ``workers`` threads; on CPU, ``workers`` = cores with ``torch.set_num_threads(1)`` is the fastest setting.
    """
    if css_variant not in ("mean", "product"):
        raise ValueError(f"css variant must be 'mean' or 'product', got {css_variant!r}")
    starts = list(range(0, a.shape[0], chunk))

    def run(i: int) -> dict[str, torch.Tensor]:
        cm = None if mask is None else mask[i : i + chunk]
        return _chunk_metrics(a[i : i + chunk], b[i : i + chunk], cm, mi_bins, mi_normalized, css_variant, lncc_window)

    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # torch ops release the GIL
            parts = list(pool.map(run, starts))
    else:
        parts = [run(i) for i in starts]
    return {
        k: torch.cat([p[k].to(torch.float64).cpu() for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
        for k in PAIR_METRICS
    }
