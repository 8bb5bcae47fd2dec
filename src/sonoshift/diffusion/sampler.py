"""Sampling the conditional denoising diffusion GAN: N large steps from noise (or a partial-noising start).

Each step feeds (x_{t+1}, condition) to the generator, which predicts x_0; the Gaussian posterior
q(x_t | x_{t+1}, x_0) then draws x_t. The last step returns the posterior mean. K samples per frame give a mean
image and a per-pixel standard deviation (the uncertainty map).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.diffusion.schedule import Schedule, sample_posterior, start_sample


@torch.no_grad()
def sample(
    G: nn.Module,
    s: Schedule,
    cond: torch.Tensor,
    generator: torch.Generator | None,
    x_init: torch.Tensor | None = None,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """One sample per condition image: (B, 1, H, W) in [-1, 1] on ``cond``'s device.

    G: the generator (``G(x, t, z)``, ``G.cfg.nz``); s: the schedule it was trained with; cond: (B, C, H, W) in
    [-1, 1] (C = 1, or 2 for the histogram-anchored cascade: hm(source), CycleGAN output); generator: the only source of randomness (on ``cond``'s device); x_init: optional (B, 1, H, W) image
    for the partial-noising start (the chain then begins at that image noised to level N instead of N(0, I));
    post: optional map applied to the final sample (a translator's ``output_gain``).
    """
    x = start_sample(s, cond[:, :1], generator, x_init)  # one image channel, whatever the condition's width
    b = cond.shape[0]
    for i in reversed(range(s.num_steps)):
        t = torch.full((b,), i, dtype=torch.long, device=cond.device)
        z = torch.randn((b, G.cfg.nz), generator=generator, device=cond.device, dtype=cond.dtype)
        # Clip x_0 (a residual generator's condition + correction may leave [-1, 1]; tanh ones never do).
        x0_pred = G(torch.cat([x, cond], dim=1), t, z).clamp(-1.0, 1.0)
        x = sample_posterior(s, x0_pred, x, t, generator)
    x = x.clamp(-1.0, 1.0)
    return x if post is None else post(x)


@torch.no_grad()
def sample_with_uncertainty(
    G: nn.Module,
    s: Schedule,
    cond: torch.Tensor,
    k: int,
    generator: torch.Generator | None,
    x_init: torch.Tensor | None = None,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K independent samples per condition image -> (mean, std), both (B, 1, H, W).

    mean is in [-1, 1]; std is the per-pixel population standard deviation over the K samples, in the same
    [-1, 1] intensity units (multiply by 0.5 for [0, 1] units), 0 for K = 1. Samples are drawn one after another
    from ``generator``, so the result depends only on its seed.
    """
    if k < 1:
        raise SonoshiftError(f"the number of samples per frame must be at least 1, got {k}.")
    draws = torch.stack([sample(G, s, cond, generator, x_init, post) for _ in range(k)])
    return draws.mean(dim=0), draws.std(dim=0, correction=0)
