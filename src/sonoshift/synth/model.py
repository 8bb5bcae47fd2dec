"""The conditional denoiser: diffusers' UNet2DModel plus an embedding of (plane, GA, scanner).

Each condition has a learned null token (plane and scanner: index 0 of their embedding table; GA: a learned
vector used where GA is NaN), so frames with missing labels train the model and classifier-free guidance has an
unconditional branch. GA, a continuous value in weeks, is embedded like a diffusion time step: a sinusoidal
projection of ``ga * ga_scale`` followed by a two-layer MLP ("sinusoidal"), or a few low Fourier features of GA
normalised to its range followed by an MLP ("fourier": smooth in GA). With ``condition_norm`` each embedding is
RMS-normalised to 1, so the three conditions enter at the same scale. The three embeddings are summed and added
to the U-Net's time embedding through its ``class_embed_type="identity"`` input.
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
import torch.nn.functional as F
from torch import nn

from sonoshift.synth.config import SynthModel


class FourierGA(nn.Module):
    """GA weeks (B,) -> (B, 2 * frequencies + 1): u = (ga - lo) / (hi - lo), then u, sin(pi k u), cos(pi k u)
    for k = 1..frequencies. Smooth in GA: the shortest period is 2 / frequencies of the range."""

    def __init__(self, ga_range: tuple[float, float], frequencies: int) -> None:
        super().__init__()
        lo, hi = (float(v) for v in ga_range)
        if not hi > lo:
            raise ValueError(f"model.ga_range must be (low, high) with high > low, got {ga_range}")
        self.lo, self.span = lo, hi - lo
        self.register_buffer("k", math.pi * torch.arange(1, frequencies + 1, dtype=torch.float32), persistent=False)
        self.out_dim = 2 * frequencies + 1

    def forward(self, ga: torch.Tensor) -> torch.Tensor:
        u = ((ga.float() - self.lo) / self.span)[:, None]
        return torch.cat([u, torch.sin(u * self.k), torch.cos(u * self.k)], dim=1)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)


class ConditionEmbedding(nn.Module):
    """(plane index, GA weeks, scanner index) -> (B, dim). Index 0 and NaN GA mean "unknown" (null token).

    ``ga_embedding``: "sinusoidal" (time-step sinusoid of ``ga * ga_scale``) or "fourier" (:class:`FourierGA`
    over ``ga_range``), each followed by a two-layer MLP. ``condition_norm``: RMS-normalise the plane row, the
    scanner row and the GA MLP output (the GA null vector is then initialised N(0, 1) and used as it is)."""

    def __init__(self, n_planes: int, n_scanners: int, dim: int, proj_dim: int, ga_scale: float, *,
                 ga_embedding: str = "sinusoidal", ga_range: tuple[float, float] = (16.0, 40.0),
                 ga_frequencies: int = 8, condition_norm: bool = False) -> None:
        super().__init__()
        self.plane = nn.Embedding(n_planes + 1, dim)
        self.scanner = nn.Embedding(n_scanners + 1, dim)
        if ga_embedding == "sinusoidal":
            self.ga_proj = Timesteps(proj_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
            self.ga_mlp = TimestepEmbedding(proj_dim, dim)
        elif ga_embedding == "fourier":
            self.ga_proj = FourierGA(ga_range, ga_frequencies)
            self.ga_mlp = TimestepEmbedding(self.ga_proj.out_dim, dim)
        else:
            raise ValueError(f"model.ga_embedding must be 'sinusoidal' or 'fourier', got {ga_embedding!r}")
        self.ga_embedding = ga_embedding
        self.ga_null = nn.Parameter(torch.zeros(dim))
        self.ga_scale = float(ga_scale)
        self.condition_norm = bool(condition_norm)
        # N(0, 1) like diffusers' own class embedding: at std 0.02 the plane was ~50x weaker than the GA MLP's
        # output, and a 64 px CPU run (1800 steps) learned to ignore it (same seed, any plane: the same image).
        for emb in (self.plane, self.scanner):
            nn.init.normal_(emb.weight, std=1.0)
        if self.condition_norm:
            nn.init.normal_(self.ga_null, std=1.0)

    def forward(self, plane: torch.Tensor, ga: torch.Tensor, scanner: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(ga)
        g0 = torch.where(known, ga, torch.zeros_like(ga)).float()
        g = self.ga_mlp(self.ga_proj(g0 * self.ga_scale if self.ga_embedding == "sinusoidal" else g0))
        p, s = self.plane(plane), self.scanner(scanner)
        if self.condition_norm:
            g, p, s = _rms(g), _rms(p), _rms(s)
        g = torch.where(known[:, None], g, self.ga_null.to(g.dtype).expand_as(g))
        return p + s + g


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
        self.cond = ConditionEmbedding(n_planes, n_scanners, dim, m.block_out_channels[0], m.ga_scale,
                                       ga_embedding=m.ga_embedding, ga_range=tuple(m.ga_range),
                                       ga_frequencies=m.ga_frequencies, condition_norm=m.condition_norm)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, plane: torch.Tensor, ga: torch.Tensor, scanner: torch.Tensor
    ) -> torch.Tensor:
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        y = self.unet(x, t, class_labels=self.cond(plane, ga, scanner), return_dict=False)[0]
        return F.pixel_shuffle(y, self.patch) if self.patch > 1 else y


__all__ = ["ConditionEmbedding", "FourierGA", "SynthUNet"]
