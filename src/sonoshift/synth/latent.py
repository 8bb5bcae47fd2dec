"""The latent variant's autoencoder: diffusers' VAE encoder / decoder, a deterministic bottleneck, unit-scale latents.

DiFUSAL's early code is a latent diffusion model ("VAE + U-Net"); sonoshift trains its own small autoencoder
(no hub weights here) in the first ``latent.autoencoder_steps`` steps of `sonoshift train synth` and then trains
the diffusion model on its frozen latents (``synth/method.py``). The encoder and decoder are diffusers'
``Encoder`` / ``Decoder`` (the blocks of ``AutoencoderKL``); the bottleneck is deterministic and every latent is
normalised to zero mean and unit RMS over (C, h, w) (a layer norm without weights), so the diffusion model sees
unit-scale latents without a fitted scaling factor. During training the decoder also sees latents with Gaussian
noise (``latent.noise``), so it tolerates the small errors a sampled latent carries.
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn

from sonoshift.synth.config import SynthLatent


def normalise_latent(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> the same with every sample at mean 0 and RMS 1 over (C, h, w)."""
    z = z - z.mean(dim=(1, 2, 3), keepdim=True)
    return z * torch.rsqrt(z.pow(2).mean(dim=(1, 2, 3), keepdim=True) + 1e-6)


class LatentAutoencoder(nn.Module):
    """Images (B, 1, H, W) in [-1, 1] <-> latents (B, ``channels``, H / f, W / f), f = 2^(levels - 1)."""

    def __init__(self, cfg: SynthLatent, *, image_channels: int = 1) -> None:
        super().__init__()
        levels = len(cfg.block_out_channels)
        self.factor = 2 ** (levels - 1)
        self.channels = int(cfg.channels)
        common = dict(block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                      norm_num_groups=cfg.norm_num_groups, mid_block_add_attention=cfg.attention)
        self.encoder = Encoder(in_channels=image_channels, out_channels=cfg.channels,
                               down_block_types=("DownEncoderBlock2D",) * levels, double_z=False, **common)
        self.decoder = Decoder(in_channels=cfg.channels, out_channels=image_channels,
                               up_block_types=("UpDecoderBlock2D",) * levels, **common)

    def latent_shape(self, size: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent of a size x size image; size must be divisible by the factor."""
        if size % self.factor:
            raise ValueError(f"image size {size} is not divisible by the autoencoder's factor {self.factor}")
        return self.channels, size // self.factor, size // self.factor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> normalised latents."""
        return normalise_latent(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images (unclamped; about [-1, 1])."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def reconstruction_loss(ae: LatentAutoencoder, x: torch.Tensor, noise: float, generator: torch.Generator
                        ) -> torch.Tensor:
    """Mean L1 between ``x`` and the decoding of its latent plus N(0, ``noise``^2) noise (from ``generator``)."""
    z = ae.encode(x)
    if noise > 0:
        z = z + noise * torch.randn(z.shape, generator=generator, device=generator.device).to(z.device, z.dtype)
    return (ae.decode(z).float() - x.float()).abs().mean()


__all__ = ["LatentAutoencoder", "normalise_latent", "reconstruction_loss"]
