"""The denoising diffusion GAN discriminator: is (x_t, x_{t+1}) a real forward pair at step t, or a generated one?

Input: x_t and x_{t+1} concatenated (2 channels, optionally the conditioning image as a third), and the step
index t. A sinusoidal time embedding (through an MLP) is added inside every residual downsampling block; a
minibatch standard-deviation channel before the head lets the discriminator see the diversity of a batch (the
cheap guard against mode collapse). Output: one real-valued logit per pair, shape (B,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.config import PosInt, Validated
from sonoshift.errors import SonoshiftError
from sonoshift.models.ddgan_unet import sinusoidal_embedding


@dataclass(frozen=True)
class DiscConfig(Validated):
    """Discriminator size. Defaults: the compact CPU variant.

    in_channels: 2 for the pair (x_t, x_{t+1}); 3 when ``see_condition`` adds the conditioning image.
    ch: base width; ch_mult: width per residual downsampling block (each halves the resolution);
    t_emb_dim: time-embedding width; mbstd_group: group size for the minibatch standard deviation.
    """

    ch: PosInt = 16
    ch_mult: tuple[PosInt, ...] = (1, 2, 2, 2)
    t_emb_dim: PosInt = 64
    mbstd_group: PosInt = 4
    see_condition: bool = False

    @property
    def in_channels(self) -> int:
        return 3 if self.see_condition else 2


# The paper-scale variant (256x256, GPU), the widths of the DDGAN large-image discriminator.
PAPER_DISC = DiscConfig(ch=64, ch_mult=(1, 2, 4, 8, 8, 8, 8), t_emb_dim=256)


class DownBlock(nn.Module):
    """Residual block: two 3x3 convs (LeakyReLU 0.2) with the time embedding added, 2x average-pool downsample."""

    def __init__(self, cin: int, cout: int, t_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(t_dim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2)
        h = h + self.temb(temb)[:, :, None, None]
        h = F.avg_pool2d(self.conv2(h), 2)
        return (F.avg_pool2d(self.skip(x), 2) + h) / math.sqrt(2.0)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the std over groups of samples, averaged over features, broadcast to each sample.

    The group is the largest size <= ``group`` that divides the batch (a batch of 1 gets a zero channel).
    """
    b, c, h, w = x.shape
    g = next(k for k in range(min(group, b), 0, -1) if b % k == 0)
    y = x.reshape(g, b // g, c, h, w)
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (b // g,)
    if g == 1:
        std = torch.zeros_like(std)
    feat = std.repeat(g)[:, None, None, None].expand(b, 1, h, w)
    return torch.cat([x, feat], dim=1)


class DDGANDiscriminator(nn.Module):
    """``forward(x_t, x_next, t, cond=None)`` -> logits (B,): high for real forward pairs.

    x_t, x_next: (B, 1, H, W) about [-1, 1]; t: (B,) step indices 0..N-1 (of x_t); cond: (B, 1, H, W), required
    when the config's ``see_condition`` is set. H and W must be divisible by 2^len(ch_mult).
    """

    def __init__(self, cfg: DiscConfig = DiscConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.t_emb_dim
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(0.2), nn.Linear(d, d), nn.LeakyReLU(0.2))
        self.stem = nn.Conv2d(cfg.in_channels, cfg.ch, 1)
        widths = [cfg.ch] + [cfg.ch * m for m in cfg.ch_mult]
        self.blocks = nn.ModuleList(DownBlock(a, b, d) for a, b in zip(widths[:-1], widths[1:]))
        self.final_conv = nn.Conv2d(widths[-1] + 1, widths[-1], 3, padding=1)
        self.head = nn.Linear(widths[-1], 1)

    def forward(
        self, x_t: torch.Tensor, x_next: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        parts = [x_t, x_next] + ([cond] if self.cfg.see_condition else [])
        if self.cfg.see_condition and cond is None:
            raise SonoshiftError("this DDGAN discriminator sees the condition, but none was given.")
        x = torch.cat(parts, dim=1)
        factor = 2 ** len(self.cfg.ch_mult)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise SonoshiftError(f"DDGAN discriminator needs H, W divisible by {factor}, got {tuple(x.shape)}.")
        temb = self.t_mlp(sinusoidal_embedding(t.to(x.device).reshape(-1).expand(x.shape[0]), self.cfg.t_emb_dim))
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, temb)
        h = minibatch_stddev(h, self.cfg.mbstd_group)
        h = F.leaky_relu(self.final_conv(h), 0.2)
        return self.head(h.mean(dim=(2, 3))).squeeze(1)
