"""Pixel-wise metrics: PSNR and MAE for images in [0, 1]."""

from __future__ import annotations

import torch

from sonoshift.metrics._inputs import prepare_pair
from sonoshift.metrics.windows import masked_mean


def mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per pair. a, b: (B, 1, H, W) or (B, H, W) in [0, 1]; mask: optional bool. -> (B,)."""
    a, b, mask = prepare_pair(a, b, mask)
    return masked_mean((a - b) ** 2, mask)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(1 / MSE), data range 1. -> (B,); +inf for identical images.

    With a mask the MSE is taken over in-mask pixels only (NaN for an empty mask).
    """
    return 10.0 * torch.log10(1.0 / mse(a, b, mask))


def mae(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error per pair, in intensity units of [0, 1]. -> (B,), in [0, 1]."""
    a, b, mask = prepare_pair(a, b, mask)
    return masked_mean((a - b).abs(), mask)
