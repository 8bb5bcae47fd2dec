"""Weight initialisation of the CycleGAN reference: conv/linear weights N(0, gain), norm scales N(1, gain)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_normal(module: nn.Module, generator: torch.Generator, gain: float = 0.02) -> nn.Module:
    """Initialise ``module`` in place and return it.

    Conv/ConvTranspose/Linear weights ~ N(0, gain), their biases 0; affine norm layers weight ~ N(1, gain),
    bias 0. All draws come from ``generator`` (a CPU torch.Generator), so the result is independent of device.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = torch.empty(m.weight.shape).normal_(0.0, gain, generator=generator)
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and getattr(m, "weight", None) is not None:
            w = torch.empty(m.weight.shape).normal_(1.0, gain, generator=generator)
            m.weight.copy_(w)
            m.bias.zero_()
    return module
