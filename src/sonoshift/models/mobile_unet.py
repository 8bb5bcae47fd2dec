"""A mobile U-Net generator: depthwise-separable convolutions, three resolutions, skip connections.

(B, 1, H, W) in [-1, 1] -> (B, 1, H, W) in [-1, 1]; H and W multiples of 4. A 3x3 stem to ``ch`` channels, two
stride-2 depthwise-separable downsamplings (ch -> 2ch -> 4ch), ``n_blocks`` residual separable blocks at the
lowest resolution, nearest x2 upsamplings each followed by a 1x1 fusion of the skip and a separable block, and a
3x3 head with tanh
(``tanh=False``: a linear head, for the correction of an anchored generator, ``models/anchored.py``; ``in_channels``
more than 1: extra input channels, there the anchor image next to the frame). Instance norm (group-norm kernel) after each convolution pair, as in the CycleGAN generator, so
the output does not depend on the batch. Candidate student for distillation (``methods/student.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.models.norm import InstanceNorm


class SeparableBlock(nn.Module):
    """depthwise 3x3 (stride s) -> pointwise 1x1 -> instance norm -> ReLU; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, padding_mode="reflect")
        self.pw = nn.Conv2d(cin, cout, 1)
        self.norm = InstanceNorm(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.pw(self.dw(x))))
        return x + h if self.residual else h


class MobileUNet(nn.Module):
    """The mobile U-Net (module docstring); ``ch`` base width, ``n_blocks`` separable blocks at 1/4 size."""

    def __init__(self, ch: int = 16, n_blocks: int = 4, in_channels: int = 1, tanh: bool = True) -> None:
        super().__init__()
        self.tanh = tanh
        self.stem = nn.Sequential(nn.Conv2d(in_channels, ch, 3, padding=1, padding_mode="reflect"), InstanceNorm(ch), nn.ReLU())
        self.down1 = SeparableBlock(ch, 2 * ch, stride=2)
        self.down2 = SeparableBlock(2 * ch, 4 * ch, stride=2)
        self.mid = nn.Sequential(*[SeparableBlock(4 * ch, 4 * ch) for _ in range(n_blocks)])
        self.fuse2 = nn.Conv2d(4 * ch + 2 * ch, 2 * ch, 1)
        self.up2 = SeparableBlock(2 * ch, 2 * ch)
        self.fuse1 = nn.Conv2d(2 * ch + ch, ch, 1)
        self.up1 = SeparableBlock(ch, ch)
        self.head = nn.Conv2d(ch, 1, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(x)
        s1 = self.down1(s0)
        h = self.mid(self.down2(s1))
        h = self.up2(self.fuse2(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), s1], dim=1)))
        h = self.up1(self.fuse1(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), s0], dim=1)))
        out = self.head(h)
        return torch.tanh(out) if self.tanh else out
