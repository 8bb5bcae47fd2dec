"""The CycleGAN ResNet generator (Johnson et al. / Zhu et al. reference design), one channel in and out.

7x7 reflect-padded stem -> two stride-2 3x3 downsamplings -> ``n_blocks`` residual blocks (reflection padding,
instance norm) -> two upsamplings (transposed conv, or nearest upsample + conv against checkerboard artifacts)
-> 7x7 head -> tanh. Instance norm without affine parameters, as in the reference; convs have biases because
the norm is not batch norm.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sonoshift.models.norm import InstanceNorm


def _norm(ch: int) -> nn.Module:
    return InstanceNorm(ch)


class ResnetBlock(nn.Module):
    """x + [reflect pad, 3x3 conv, IN, ReLU, reflect pad, 3x3 conv, IN](x); shape preserved."""

    def __init__(self, ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """Image-to-image generator: (B, in_ch, H, W) in [-1, 1] -> (B, out_ch, H, W) in [-1, 1].

    H and W must be multiples of 4. ``ngf`` is the stem width (64 in the reference, about 11.37 M parameters
    with 9 blocks and one channel), ``n_blocks`` the number of residual blocks, ``upsample`` either
    ``"transpose"`` (reference) or ``"resize"`` (nearest x2 + 3x3 conv).
    """

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        *,
        ngf: int = 64,
        n_blocks: int = 9,
        upsample: Literal["transpose", "resize"] = "transpose",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        assert n_blocks >= 0, "n_blocks must be >= 0"
        assert upsample in ("transpose", "resize"), f"upsample must be 'transpose' or 'resize', got {upsample!r}"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), _norm(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), _norm(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, dropout) for _ in range(n_blocks)]
        for _ in range(2):
            if upsample == "transpose":
                layers.append(nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1))
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(ch, ch // 2, 3)]
            layers += [_norm(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
