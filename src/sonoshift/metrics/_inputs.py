"""Checking and normalizing metric inputs: (B, 1, H, W) or (B, H, W) images in [0, 1], optional bool masks."""

from __future__ import annotations

import torch

from sonoshift.errors import SonoshiftError


def as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    """(B, 1, H, W) or (B, H, W) -> (B, H, W); integers become float32, float64 stays float64."""
    if not isinstance(x, torch.Tensor):
        raise SonoshiftError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise SonoshiftError(f"{name} must have one channel, got shape {tuple(x.shape)}.")
        x = x[:, 0]
    if x.dim() != 3:
        raise SonoshiftError(f"{name} must be (B, 1, H, W) or (B, H, W), got shape {tuple(x.shape)}.")
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return x


def prepare_pair(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate an image pair batch and its optional mask; returns (a, b, mask) as (B, H, W) with one float dtype.

    A mask of all True is replaced by None (same numbers, faster path).
    """
    a, b = as_batch(a, "image batch a"), as_batch(b, "image batch b")
    if a.shape != b.shape:
        raise SonoshiftError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}.")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    if mask is not None:
        if mask.dim() == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if mask.dim() == 2:
            mask = mask.unsqueeze(0).expand_as(a)
        if mask.shape != a.shape:
            raise SonoshiftError(f"mask shape {tuple(mask.shape)} does not match images {tuple(a.shape)}.")
        mask = mask.to(device=a.device, dtype=torch.bool)
        if bool(mask.all()):
            mask = None
    return a, b, mask
