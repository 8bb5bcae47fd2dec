"""The exportable forward pass of each translator, and the noise a stochastic one consumes per call.

ONNX graphs hold no random number generator of ours, so a stochastic translator (DDGAN, cascade) is exported as
its sampler unrolled over its N steps with every random draw as an input:

    inputs   x     (B, 1, H, W) source frame in [-1, 1]
             noise (B, N, H, W) noise[:, 0] starts the chain, noise[:, k] (k >= 1) is the posterior noise of
                   denoising step k (the last step returns the posterior mean and draws nothing)
             z     (B, N, nz)   the generator's latent at denoising step k
    output   y     (B, 1, H, W) in [-1, 1]

:func:`draw_noise` draws these from a ``torch.Generator`` in exactly the order ``diffusion.sampler.sample`` draws
them, so a caller that seeds a generator gets the same sample from ONNX Runtime as from PyTorch. Deterministic
translators (CycleGAN, student) are exported as their generator: ``x -> y``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.diffusion.schedule import Schedule, posterior_mean_var, q_sample
from sonoshift.methods.anchor import apply_as_gain, keep_moments
from sonoshift.methods.output_gamma import apply_gamma


@dataclass(frozen=True)
class NoiseSpec:
    """What a graph needs besides ``x``: ``steps`` N denoising steps (0: deterministic) and latent size ``nz``."""

    steps: int = 0
    nz: int = 0

    @property
    def stochastic(self) -> bool:
        return self.steps > 0


def draw_noise(
    spec: NoiseSpec, batch: int, size: tuple[int, int], generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (noise (B, N, H, W), z (B, N, nz)) inputs of an unrolled sampler, drawn from ``generator`` (on its own
    device) in the order of ``diffusion.sampler.sample``: start noise, then per step the latent and the posterior
    noise (the last step's posterior noise is drawn and discarded, as the sampler multiplies it by 0)."""
    if not spec.stochastic:
        raise SonoshiftError("a deterministic translator takes no noise inputs.")
    h, w = size
    dev = generator.device
    eps = [torch.randn((batch, 1, h, w), generator=generator, device=dev, dtype=dtype)]
    zs = []
    for k in range(spec.steps):
        zs.append(torch.randn((batch, spec.nz), generator=generator, device=dev, dtype=dtype))
        e = torch.randn((batch, 1, h, w), generator=generator, device=dev, dtype=dtype)
        if k < spec.steps - 1:
            eps.append(e)
    return torch.cat(eps, dim=1), torch.stack(zs, dim=1)


def plain_layers(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode with every CPU fast path switched off (layers with a ``fast`` flag take
    their plain ``F.conv2d`` path: same parameters and function, and traceable)."""
    net = copy.deepcopy(net).eval().requires_grad_(False)
    for m in net.modules():
        if isinstance(getattr(m, "fast", None), bool):
            m.fast = False
    return net


class UnrolledSampler(nn.Module):
    """The DDGAN sampler (``diffusion.sampler.sample``) with its N steps written out and the noise as inputs.

    G: the x_0-predicting generator (``G(cat[x_t, cond], t, z)``); schedule: the one it was trained with; start:
    "noise" or "partial" (the chain starts at the condition noised to level N); pre: optional network applied to
    the source first (the cascade's CycleGAN), whose clamped output is the condition; output_gain: the
    translator's ``output_gain`` (``methods.anchor.apply_as_gain`` on the base image; 0 = off); output_gamma: its
    ``output_gamma`` (``methods.output_gamma.apply_gamma``, after the gain; 1 = off); keep: the base image's
    per-image moments last (``methods.anchor.keep_moments``; the translator's ``keep_moments``).
    """

    def __init__(self, G: nn.Module, schedule: Schedule, start: str, pre: nn.Module | None = None,
                 anchor: nn.Module | None = None, output_gain: float = 0.0, output_gamma: float = 1.0,
                 keep: bool = False) -> None:
        super().__init__()
        self.keep = bool(keep)
        self.output_gain = float(output_gain)
        self.output_gamma = float(output_gamma)
        self.G = G
        self.pre = pre
        self.anchor = anchor
        self.schedule = schedule
        self.start = start

    def forward(self, x: torch.Tensor, noise: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        n = s.num_steps
        base = None if self.pre is None else self.pre(x).clamp(-1.0, 1.0)
        if self.anchor is None:  # as methods.anchor.anchored_condition
            cond = x if base is None else base
        else:
            a = self.anchor(x)
            cond = a if base is None else torch.cat([a, base], dim=1)
        x_t = noise[:, :1]
        if self.start == "partial":
            x_t = q_sample(s, cond[:, :1], torch.full((1,), n, dtype=torch.long), x_t)
        for k, i in enumerate(reversed(range(n))):
            t = torch.full((1,), i, dtype=torch.long)
            x0 = self.G(torch.cat([x_t, cond], dim=1), t, z[:, k]).clamp(-1.0, 1.0)  # as diffusion.sampler
            mean, var = posterior_mean_var(s, x0, x_t, t)
            x_t = mean + var.sqrt() * noise[:, k + 1 : k + 2] if i > 0 else mean
        x_t = x_t.clamp(-1.0, 1.0)
        x_t = apply_as_gain(x_t, cond[:, :1], self.output_gain) if self.output_gain > 0 else x_t
        x_t = apply_gamma(x_t, self.output_gamma)
        return keep_moments(x_t, cond[:, :1]) if self.keep else x_t


def translator_graph(translator: Any) -> tuple[nn.Module, NoiseSpec]:
    """The exportable module of a PyTorch translator and the noise it needs.

    Deterministic translators expose their generator as ``net`` (CycleGAN, student); stochastic ones their
    generator ``G``, ``schedule``, ``start`` and optional ``pre`` network (DDGAN, cascade). The module is a copy on
    the CPU with fast paths off; the translator is left untouched.
    """
    if hasattr(translator, "net"):
        return plain_layers(translator.net).cpu().float(), NoiseSpec()
    if all(hasattr(translator, k) for k in ("G", "schedule", "start")):
        G = plain_layers(translator.G).cpu().float()
        pre = getattr(translator, "pre", None)
        pre = None if pre is None else plain_layers(pre).cpu().float()
        spec = NoiseSpec(translator.schedule.num_steps, int(G.cfg.nz))
        hm = getattr(translator, "anchor", None)
        anchor = None if hm is None else hm.module()
        gain = float(getattr(translator, "output_gain", 0.0))
        gamma = float(getattr(translator, "output_gamma", 1.0))
        keep = bool(getattr(translator, "keep_moments", False))
        return UnrolledSampler(G, translator.schedule, translator.start, pre, anchor, gain, gamma, keep).eval(), spec
    raise SonoshiftError(f"'{getattr(translator, 'method', type(translator).__name__)}' translators cannot be "
                         "exported to ONNX (no generator network found).")


__all__ = ["NoiseSpec", "UnrolledSampler", "draw_noise", "plain_layers", "translator_graph"]
