"""Classical augmentation for plane classification (the explicit "classical" arm): horizontal flip, a small
random affine (rotation, isotropic scale, translation), gamma on [0, 1] intensities, and speckle-like
multiplicative noise (Gaussian noise smoothed over 3x3 pixels, so it is grainy like speckle, not per-pixel).
Every draw comes from an explicit CPU ``torch.Generator``; images stay in [-1, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sonoshift.config import NonNegFloat, UnitFloat, Validated


@dataclass(frozen=True)
class AugmentConfig(Validated):
    """``enabled`` switches the whole arm; each field is the largest perturbation drawn uniformly."""

    enabled: bool = True
    hflip: bool = True
    rotate_deg: NonNegFloat = 10.0
    scale: UnitFloat = 0.1  # zoom factor drawn in [1 - scale, 1 + scale]
    translate: UnitFloat = 0.05  # fraction of the image side
    gamma: NonNegFloat = 0.3  # gamma = exp(u), u in [-gamma, gamma]
    speckle: NonNegFloat = 0.15  # std of the multiplicative noise


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch (B, 1, H, W) in [-1, 1]; returns a new tensor on ``x.device`` (identity when disabled)."""
    if not cfg.enabled:
        return x
    b, dev = x.shape[0], x.device
    u = lambda: (torch.rand(b, generator=generator) * 2 - 1).to(dev)  # noqa: E731 - uniform in [-1, 1]
    if cfg.hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.rotate_deg or cfg.scale or cfg.translate:
        ang = u() * math.radians(cfg.rotate_deg)
        s = 1 + u() * cfg.scale
        tx, ty = u() * cfg.translate * 2, u() * cfg.translate * 2  # affine_grid units: the side is 2
        cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # pad with -1 (black): the field of view outside the image is empty, as in prepared frames
        x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    unit = ((x + 1) / 2).clamp(0, 1)
    if cfg.gamma:
        g = torch.exp(u() * cfg.gamma)
        unit = unit.clamp_min(1e-6) ** g[:, None, None, None]
    if cfg.speckle:
        n = torch.randn(x.shape, generator=generator).to(dev)
        n = F.avg_pool2d(n, 3, stride=1, padding=1) * 3  # smoothed, std back to ~1
        unit = unit * (1 + cfg.speckle * n)
    return (unit.clamp(0, 1) * 2 - 1).contiguous()
