"""The 70x70 PatchGAN discriminator of pix2pix/CycleGAN, one channel in.

4x4 convs: ``ndf`` stride 2 (no norm), then ``n_layers - 1`` more stride-2 convs doubling up to 8 x ndf, one
stride-1 conv, and a stride-1 conv to a 1-channel map of real/fake scores (raw, no sigmoid: LSGAN).
With the defaults a 256x256 input gives a 30x30 map; each output sees a 70x70 input patch.
"""

from __future__ import annotations

import torch
from torch import nn

from sonoshift.models.norm import InstanceNorm


class PatchGAN(nn.Module):
    """(B, in_ch, H, W) in [-1, 1] -> (B, 1, h, w) patch scores (h = 30 for H = 256 with n_layers = 3)."""

    def __init__(self, in_ch: int = 1, *, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        assert n_layers >= 1, "n_layers must be >= 1"
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1),
                InstanceNorm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1),
            InstanceNorm(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
