"""The conditional denoiser: diffusers' UNet2DModel plus an embedding of (plane, GA, scanner).

Each condition has a learned null token (plane and scanner: index 0 of their embedding table; GA: a learned
vector used where GA is NaN), so frames with missing labels train the model and classifier-free guidance has an
unconditional branch. GA, a continuous value in weeks, is embedded like a diffusion time step: a sinusoidal
projection of ``ga * ga_scale`` followed by a two-layer MLP. The three embeddings are summed and added to the
U-Net's time embedding through its ``class_embed_type="identity"`` input.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
import torch.nn.functional as F
from torch import nn

from sonoshift.synth.config import SynthModel


class ConditionEmbedding(nn.Module):
    """(plane index, GA weeks, scanner index) -> (B, dim). Index 0 and NaN GA mean "unknown" (null token)."""

    def __init__(self, n_planes: int, n_scanners: int, dim: int, proj_dim: int, ga_scale: float) -> None:
        super().__init__()
        self.plane = nn.Embedding(n_planes + 1, dim)
        self.scanner = nn.Embedding(n_scanners + 1, dim)
        self.ga_proj = Timesteps(proj_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.ga_mlp = TimestepEmbedding(proj_dim, dim)
        self.ga_null = nn.Parameter(torch.zeros(dim))
        self.ga_scale = float(ga_scale)
        # N(0, 1) like diffusers' own class embedding: at std 0.02 the plane was ~50x weaker than the GA MLP's
        # output, and a 64 px CPU run (1800 steps) learned to ignore it (same seed, any plane: the same image).
        for emb in (self.plane, self.scanner):
            nn.init.normal_(emb.weight, std=1.0)

    def forward(self, plane: torch.Tensor, ga: torch.Tensor, scanner: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(ga)
        g = self.ga_mlp(self.ga_proj(torch.where(known, ga, torch.zeros_like(ga)).float() * self.ga_scale))
        g = torch.where(known[:, None], g, self.ga_null.to(g.dtype).expand_as(g))
        return self.plane(plane) + self.scanner(scanner) + g


class SynthUNet(nn.Module):
    """Noise (or v) predictor: ``forward(x, t, plane, ga, scanner)`` with x (B, C, H, W), t (B,) int steps,
    plane / scanner (B,) int64 indices (0 = unknown), ga (B,) float weeks (NaN = unknown) -> (B, C, H, W).
    H and W must be divisible by ``m.patch`` x 2^(levels - 1)."""

    def __init__(self, m: SynthModel, *, channels: int, sample_size: int, n_planes: int, n_scanners: int) -> None:
        super().__init__()
        if m.patch < 1 or sample_size % m.patch:
            raise ValueError(f"model.patch {m.patch} must be >= 1 and divide the image size {sample_size}")
        self.patch = m.patch
        levels = len(m.block_out_channels)
        if len(m.attention) != levels:
            raise ValueError(f"model.attention needs one flag per level ({levels}), got {len(m.attention)}")
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in m.attention)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(m.attention))
        self.unet = UNet2DModel(
            sample_size=sample_size // m.patch,
            in_channels=channels * m.patch**2,
            out_channels=channels * m.patch**2,
            block_out_channels=tuple(m.block_out_channels),
            layers_per_block=m.layers_per_block,
            down_block_types=down,
            up_block_types=up,
            attention_head_dim=m.attention_head_dim,
            norm_num_groups=m.norm_num_groups,
            dropout=m.dropout,
            class_embed_type="identity",
            resnet_time_scale_shift=m.time_norm,
        )
        dim = m.block_out_channels[0] * 4
        self.cond = ConditionEmbedding(n_planes, n_scanners, dim, m.block_out_channels[0], m.ga_scale)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, plane: torch.Tensor, ga: torch.Tensor, scanner: torch.Tensor
    ) -> torch.Tensor:
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        y = self.unet(x, t, class_labels=self.cond(plane, ga, scanner), return_dict=False)[0]
        return F.pixel_shuffle(y, self.patch) if self.patch > 1 else y


__all__ = ["ConditionEmbedding", "SynthUNet"]
