"""SSIM, its luminance / contrast / structure maps, and CSS (SSIM without luminance).

Definitions (DESIGN.md §5): Gaussian window 11x11, sigma 1.5; C1 = (0.01)^2, C2 = (0.03)^2, C3 = C2 / 2;
population statistics. Without a mask the value equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``: the map
is defined for window centres at least 5 pixels from the border (skimage crops that border before averaging).

With a mask, each window uses only in-mask pixels (weights renormalized), and the map is averaged over window
centres that are inside the mask (and at least 5 pixels from the border). A pair whose mask has no such centre
gets NaN. A single-pixel mask gives zero variances, so SSIM reduces to the luminance term of those two pixels.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from sonoshift.metrics._inputs import prepare_pair
from sonoshift.metrics.windows import crop_center, gaussian_kernel1d, masked_mean, window_moments

K1, K2 = 0.01, 0.03
C1, C2 = K1**2, K2**2
C3 = C2 / 2


class SSIMMaps(NamedTuple):
    """Per-pixel maps on the valid grid (B, H - 10, W - 10) and the cropped mask (or None)."""

    ssim: torch.Tensor
    luminance: torch.Tensor
    contrast: torch.Tensor
    structure: torch.Tensor
    mask: torch.Tensor | None


def maps_from_moments(
    mu_a: torch.Tensor,
    mu_b: torch.Tensor,
    va: torch.Tensor,
    vb: torch.Tensor,
    cov: torch.Tensor,
    cmask: torch.Tensor | None,
) -> SSIMMaps:
    """SSIM, l, c, s maps from windowed moments (see ``windows.window_moments``) and the cropped mask."""
    lum = (mu_a * mu_b).mul_(2).add_(C1).div_((mu_a * mu_a).add_(mu_b * mu_b).add_(C1))
    den = (va + vb).add_(C2)
    ssim = (2 * cov).add_(C2).div_(den).mul_(lum)
    sd_ab = (va.clamp_min(0) * vb.clamp_min(0)).sqrt_()
    con = (2 * sd_ab).add_(C2).div_(den)
    struct = (cov + C3).div_(sd_ab.add_(C3))
    return SSIMMaps(ssim, lum, con, struct, cmask)


def ssim_maps(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, sigma: float = 1.5
) -> SSIMMaps:
    """SSIM, l, c and s maps for image pairs in [0, 1] ((B, 1, H, W) or (B, H, W)); see the module notes."""
    a, b, mask = prepare_pair(a, b, mask)
    taps = gaussian_kernel1d(sigma, 3.5, dtype=a.dtype, device=a.device)
    moments = window_moments(a, b, taps, mask)
    return maps_from_moments(*moments, None if mask is None else crop_center(mask, taps.numel()))


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM per pair -> (B,), in [-1, 1]; 1 for identical images."""
    maps = ssim_maps(a, b, mask)
    return masked_mean(maps.ssim, maps.mask)


def css_from_maps(maps: SSIMMaps, variant: Literal["mean", "product"] = "mean") -> torch.Tensor:
    """CSS from precomputed maps: mean of (c + s) / 2 (``mean``) or of c * s (``product``) -> (B,)."""
    if variant == "mean":
        m = 0.5 * (maps.contrast + maps.structure)
    elif variant == "product":
        m = maps.contrast * maps.structure
    else:
        raise ValueError(f"css variant must be 'mean' or 'product', got {variant!r}")
    return masked_mean(m, maps.mask)


def css(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    variant: Literal["mean", "product"] = "mean",
) -> torch.Tensor:
    """Contrast-structure similarity per pair (SSIM without luminance) -> (B,), in [-1, 1]; 1 when identical."""
    return css_from_maps(ssim_maps(a, b, mask), variant)
