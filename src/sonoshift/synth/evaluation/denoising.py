"""How well does a trained denoiser remove noise at each diffusion time step? (the cheap first diagnosis of bad
samples: ``bench/synth_denoise.py``).

Real frames are noised with the training forward process at chosen steps t, the network predicts, and its
prediction is turned into a noise estimate; the score is the noise MSE, i.e. the share of the added noise NOT
removed (0 = a perfect denoiser, 1 = one that removes nothing, for either prediction type), over all pixels and
separately over the background (pixels at the black level of the frames) and the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def noise_estimate(out: torch.Tensor, xt: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """The noise implied by the network output ``out`` at noisy input ``xt`` and level ``alpha_bar`` (B,):
    ``out`` itself for "epsilon"; for "v_prediction" (v = sqrt(a) eps - sqrt(1 - a) x0),
    eps = sqrt(a) v + sqrt(1 - a) x_t."""
    if prediction == "epsilon":
        return out
    a = alpha_bar.view(-1, *([1] * (xt.dim() - 1))).to(xt.dtype)
    return a.sqrt() * out + (1 - a).sqrt() * xt


@torch.no_grad()
def denoising_error(
    denoise: Denoiser, x0: torch.Tensor, alphas_cumprod: torch.Tensor, steps: Sequence[int], prediction: str,
    generator: torch.Generator, *, background: float = -0.97, batch_size: int = 64,
) -> list[dict[str, float]]:
    """Per step t of ``steps``: {t, noise_var (1 - alpha_bar), all, background, foreground} where the last three
    are the MSE between the added noise and the noise implied by ``denoise(x_t, t)`` (B,) -> output, over all
    pixels, pixels of ``x0`` below ``background`` and the others (NaN when a group is empty). ``x0`` (N, C, H, W)
    in [-1, 1]; noise from ``generator`` (one draw per step)."""
    bg = x0 < background
    rows = []
    for t in steps:
        a = alphas_cumprod[int(t)].float()
        eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device, x0.dtype)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        err = torch.empty_like(x0)
        for lo in range(0, len(x0), batch_size):
            sl = slice(lo, lo + batch_size)
            tt = torch.full((xt[sl].shape[0],), int(t), dtype=torch.int64, device=x0.device)
            out = denoise(xt[sl], tt).float()
            err[sl] = (noise_estimate(out, xt[sl], a.expand(len(tt)), prediction) - eps[sl]).pow(2)
        rows.append({
            "t": int(t), "noise_var": float(1 - a), "all": float(err.mean()),
            "background": float(err[bg].mean()) if bg.any() else float("nan"),
            "foreground": float(err[~bg].mean()) if (~bg).any() else float("nan"),
        })
    return rows


__all__ = ["denoising_error", "noise_estimate"]
