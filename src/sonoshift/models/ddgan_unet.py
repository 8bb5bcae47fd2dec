"""The denoising diffusion GAN generator: a conditional U-Net that predicts x_0 from (x_{t+1}, condition, t, z).

Input: x_{t+1} concatenated with the conditioning image (2 channels, [-1, 1]), the step index t (0..N-1) and a
latent z ~ N(0, I). The time enters through a sinusoidal embedding added inside every residual block; the latent
is pixel-normalised, mapped by an MLP and drives an adaptive group norm (per-channel scale and shift) in every
block, which is what makes the generator's output a distribution rather than a point. Self-attention runs at the
low resolutions listed in ``attn_resolutions``. Output: x_0, 1 channel, in one of two parametrizations
(``output``): "tanh", x_0 = tanh(head(h)) as in the DDGAN reference; or "residual", x_0 = condition + head(h),
so that with the zero-initialized head (``zero_init``) an untrained generator returns its condition exactly
and training can only add a correction to it (the condition is the second input channel).

As in the reference (NVlabs/denoising-diffusion-gan, score_sde's NCSN++), ``zero_init`` zeroes the output conv,
the last conv of every residual block and the attention output projection, so every block starts as its skip
path; group norms use min(ch // 4, 32) groups (``group_norm: reference``). ``group_norm: max`` is the former
choice (as many groups as divide ch, up to 32: instance norm at widths <= 32), kept for the ablation.

Sizes come from ``UNetConfig``: the defaults are a compact CPU variant; ``PAPER_UNET`` is the paper-scale one for
256x256 on a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.config import PosInt, Range, Validated
from sonoshift.errors import SonoshiftError


@dataclass(frozen=True)
class UNetConfig(Validated):
    """Generator size. Defaults: the compact CPU variant (about 0.3 M parameters).

    in_channels: x_{t+1} plus the condition (2). ch: base width; ch_mult: width multiplier per resolution (one
    2x downsampling between consecutive entries); num_res_blocks per resolution; attn_resolutions: feature-map
    sizes in pixels (at the training image size) where self-attention runs; nz: latent size; z_emb_dim, n_mlp:
    the latent mapping MLP; t_emb_dim: time-embedding width; dropout in residual blocks. output: "tanh" (x_0 =
    tanh(head)), "residual" (x_0 = condition + head) or "gain" (x_0 + 1 = (condition + 1) exp(head): a multiplicative
    correction in intensity, which scales the condition's speckle with its grey level instead of shifting it over a
    black floor); zero_init: the reference's zero init of the output conv,
    each residual block's last conv and the attention projection; group_norm: "reference" (min(ch // 4, 32)
    groups) or "max" (the most groups <= 32 that divide ch). correction_sigma: std in pixels of a Gaussian
    low-pass applied to the residual or gain correction (0 = none; not with ``output: tanh``): a smooth correction
    moves local grey levels (gain, depth profile) but cannot draw speckle or structure of its own.
    """

    in_channels: PosInt = 2
    out_channels: PosInt = 1
    ch: PosInt = 16
    ch_mult: tuple[PosInt, ...] = (1, 2, 2)
    num_res_blocks: PosInt = 1
    attn_resolutions: tuple[PosInt, ...] = (8, 16)
    nz: PosInt = 32
    z_emb_dim: PosInt = 64
    n_mlp: PosInt = 2
    t_emb_dim: PosInt = 64
    dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0
    output: Literal["tanh", "residual", "gain"] = "tanh"
    zero_init: bool = True
    group_norm: Literal["reference", "max"] = "reference"
    correction_sigma: Annotated[float, Range(0, 64)] = 0.0


# The paper-scale variant (256x256, GPU): the widths and depths of the DDGAN image generators.
PAPER_UNET = UNetConfig(
    ch=64,
    ch_mult=(1, 1, 2, 2, 4, 4),
    num_res_blocks=2,
    attn_resolutions=(16,),
    nz=100,
    z_emb_dim=256,
    n_mlp=4,
    t_emb_dim=256,
)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) times or step indices -> (B, dim) [sin, cos] features at geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _largest_divisor(ch: int, at_most: int) -> int:
    return next(g for g in range(max(min(at_most, ch), 1), 0, -1) if ch % g == 0)


def group_count(ch: int, kind: str = "reference") -> int:
    """Group-norm groups for ``ch`` channels. "reference": min(ch // 4, 32) as the DDGAN reference (4 channels per
    group at small widths, so a channel's global level survives), lowered to a divisor of ch when it is not one;
    "max": the most groups <= 32 that divide ch (instance norm at widths <= 32)."""
    if kind == "reference":
        return _largest_divisor(ch, max(min(ch // 4, 32), 1))
    if kind == "max":
        return _largest_divisor(ch, 32)
    raise SonoshiftError(f"generator.group_norm must be 'reference' or 'max', got {kind!r}.")


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalized 1-D Gaussian taps of std ``sigma`` px, radius round(3 sigma) (at least 1)."""
    r = max(int(3.0 * sigma + 0.5), 1)
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (k / sigma) ** 2)
    return (taps / taps.sum()).float()


def lowpass(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) filtered by the separable kernel ``taps`` along both axes, replicate padding (any size).
    Channels are folded into the batch, so the kernel's shape is constant (ONNX export needs that)."""
    r = (taps.numel() - 1) // 2
    k = taps.to(x.dtype)
    y = x.reshape(-1, 1, x.shape[-2], x.shape[-1])
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1)).reshape(x.shape)


def _zero(module: nn.Module) -> nn.Module:
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class LatentMapping(nn.Module):
    """z (B, nz) -> pixel norm -> ``n_mlp`` linear + LeakyReLU layers -> style vector (B, z_emb_dim)."""

    def __init__(self, nz: int, z_emb_dim: int, n_mlp: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        for k in range(n_mlp):
            layers += [nn.Linear(nz if k == 0 else z_emb_dim, z_emb_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AdaptiveGroupNorm(nn.Module):
    """Group norm without affine parameters, then (1 + gamma(style)) * x + beta(style) per channel."""

    def __init__(self, ch: int, style_dim: int, groups: str = "reference") -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(ch, groups), ch, affine=False)
        self.style = nn.Linear(style_dim, 2 * ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class ResBlock(nn.Module):
    """Two 3x3 convs with adaptive group norm (latent) and an added time embedding; residual sum / sqrt(2)."""

    def __init__(
        self, cin: int, cout: int, t_dim: int, style_dim: int, dropout: float, groups: str = "reference",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(cin, style_dim, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(t_dim, cout)
        self.norm2 = AdaptiveGroupNorm(cout, style_dim, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if zero_init:
            _zero(self.conv2)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, style)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h, style))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a (low-resolution) feature map, residual."""

    def __init__(self, ch: int, groups: str = "reference", zero_init: bool = True) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(ch, groups), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        if zero_init:
            _zero(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w)) / math.sqrt(2.0)


class DDGANUNet(nn.Module):
    """Conditional U-Net generator: ``forward(x, t, z)`` -> predicted x_0 (B, 1, H, W), in [-1, 1] for
    ``output: tanh``; for ``output: residual`` / ``gain`` the condition plus / times a correction (the sampler
    clips it).

    ``image_size`` (pixels, the training size) decides at which levels self-attention is built: those whose
    feature maps are ``attn_resolutions`` pixels wide at that size. Other sizes still run (same layers).

    x: (B, in_channels, H, W), x_{t+1} and the condition concatenated, values about [-1, 1]; H and W divisible
    by 2^(len(ch_mult) - 1). t: (B,) integer step indices 0..N-1. z: (B, nz) standard normal latents.
    """

    def __init__(self, cfg: UNetConfig = UNetConfig(), image_size: int = 64) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        t_dim, s_dim = cfg.t_emb_dim, cfg.z_emb_dim
        if cfg.output not in ("tanh", "residual", "gain"):
            raise SonoshiftError(f"generator.output must be 'tanh', 'residual' or 'gain', got {cfg.output!r}.")
        if cfg.output != "tanh" and (cfg.in_channels < 2 or cfg.out_channels != 1):
            raise SonoshiftError(f"generator.output '{cfg.output}' needs the condition as input channel 2 and 1 "
                                 "output.")
        if cfg.correction_sigma > 0 and cfg.output == "tanh":
            raise SonoshiftError("generator.correction_sigma needs generator.output 'residual' or 'gain'.")
        gn, zi = cfg.group_norm, cfg.zero_init
        # not a parameter and not saved: rebuilt from the config
        self.register_buffer("taps", gaussian_taps(cfg.correction_sigma) if cfg.correction_sigma > 0 else None,
                             persistent=False)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, t_dim, s_dim, cfg.dropout, gn, zi)

        def attn(ch: int) -> AttnBlock:
            return AttnBlock(ch, gn, zi)
        self.t_mlp = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.z_map = LatentMapping(cfg.nz, s_dim, cfg.n_mlp)
        self.stem = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        skips = [cfg.ch]
        cur = cfg.ch
        for level, w in enumerate(widths):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            use_attn = (image_size >> level) in cfg.attn_resolutions
            for _ in range(cfg.num_res_blocks):
                blocks.append(res(cur, w))
                attns.append(attn(w) if use_attn else nn.Identity())
                cur = w
                skips.append(cur)
            self.down.append(blocks)
            self.down_attn.append(attns)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid1 = res(cur, cur)
        self.mid_attn = attn(cur)
        self.mid2 = res(cur, cur)
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            w = widths[level]
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            use_attn = (image_size >> level) in cfg.attn_resolutions
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(res(cur + skips.pop(), w))
                attns.append(attn(w) if use_attn else nn.Identity())
                cur = w
            self.up.append(blocks)
            self.up_attn.append(attns)
            if level > 0:
                self.upsample.append(nn.Conv2d(cur, cur, 3, padding=1))
        self.head_norm = nn.GroupNorm(group_count(cur, gn), cur)
        self.head = nn.Conv2d(cur, cfg.out_channels, 3, padding=1)
        if zi:
            _zero(self.head)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        factor = 2 ** (len(cfg.ch_mult) - 1)
        if x.dim() != 4 or x.shape[1] != cfg.in_channels or x.shape[-1] % factor or x.shape[-2] % factor:
            raise SonoshiftError(
                f"DDGAN generator needs input (B, {cfg.in_channels}, H, W) with H, W divisible by {factor}, "
                f"got {tuple(x.shape)}."
            )
        temb = self.t_mlp(sinusoidal_embedding(t.to(x.device).reshape(-1).expand(x.shape[0]), cfg.t_emb_dim))
        style = self.z_map(z)
        h = self.stem(x)
        hs = [h]
        for level, (blocks, attns) in enumerate(zip(self.down, self.down_attn)):
            for block, attn in zip(blocks, attns):
                h = attn(block(h, temb, style))
                hs.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb, style)), temb, style)
        for k, (blocks, attns) in enumerate(zip(self.up, self.up_attn)):
            for block, attn in zip(blocks, attns):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), temb, style))
            if k < len(self.upsample):
                h = self.upsample[k](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.head(F.silu(self.head_norm(h)))
        if cfg.output == "tanh":
            return torch.tanh(out)
        # x_0 = condition + correction (or times exp(correction) in intensity, condition + 1): unclamped, so the
        # additive correction keeps its gradient at the black (-1) background; the sampler clips each x_0
        # prediction to [-1, 1]. A low-passed correction changes local grey levels only.
        if self.taps is not None:
            out = lowpass(out, self.taps)
        if cfg.output == "gain":
            return (x[:, 1:2] + 1.0) * torch.exp(out) - 1.0
        return x[:, 1:2] + out
