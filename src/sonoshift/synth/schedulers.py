"""Noise schedulers by name, all from diffusers, built fresh for each use (diffusers schedulers keep sampling
state in themselves, so a pipeline never reuses one between calls).

- ``ddpm``: the ancestral sampler of the training process (``DDPMScheduler``), one step per training step;
- ``ddim``: deterministic DDIM (eta 0, ``DDIMScheduler``);
- ``dpmpp``: DPM-Solver++ 2M multistep (``DPMSolverMultistepScheduler``, ``algorithm_type="dpmsolver++"``);
- ``unipc``: UniPC multistep (``UniPCMultistepScheduler``).
All share the training beta schedule, so a model trained with DDPM samples with any of them without retraining.
Every sampler starts at the last training step (``trailing`` spacing) and keeps its estimate of the clean image
inside the data range [-1, 1] (DDPM / DDIM clip it; DPM-Solver++ and UniPC use dynamic thresholding capped at 1).
Without that, an epsilon-predicting model's first estimate at t = 999, where alpha_bar is ~2e-9 on the cosine
schedule, is its noise error divided by ~5e-5, and few-step samplers never recover from it.
"""

from __future__ import annotations

from typing import Any

import torch

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UniPCMultistepScheduler,
)

from sonoshift.errors import SonoshiftError
from sonoshift.synth.config import SynthDiffusion

SAMPLERS = ("dpmpp", "ddim", "unipc", "ddpm")


def _common(d: SynthDiffusion) -> dict[str, Any]:
    return {
        "num_train_timesteps": d.num_train_timesteps,
        "beta_schedule": d.beta_schedule,
        "prediction_type": d.prediction,
    }


def training_scheduler(d: SynthDiffusion) -> DDPMScheduler:
    """The DDPM forward process used in training (``add_noise``, ``get_velocity``)."""
    return DDPMScheduler(**_common(d), clip_sample=False)


def sampling_scheduler(name: str, d: SynthDiffusion):
    """A fresh diffusers scheduler ``name`` (one of SAMPLERS) with the training noise schedule."""
    c = _common(d)
    if name == "ddpm":
        return DDPMScheduler(**c, clip_sample=True, clip_sample_range=1.0, variance_type="fixed_small",
                             timestep_spacing="trailing")
    if name == "ddim":
        return DDIMScheduler(**c, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True,
                             timestep_spacing="trailing")
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(**c, algorithm_type="dpmsolver++", solver_order=2,
                                           timestep_spacing="trailing", lower_order_final=True, thresholding=True,
                                           sample_max_value=1.0)
    if name == "unipc":
        return UniPCMultistepScheduler(**c, timestep_spacing="trailing", thresholding=True, sample_max_value=1.0)
    raise SonoshiftError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)}).")


def loss_weights(alpha_bar: torch.Tensor, prediction: str, kind: str, gamma: float = 5.0) -> torch.Tensor:
    """Per-sample weights of the MSE on the network's target at noise levels ``alpha_bar`` (B,).

    "none": 1. "min_snr" (Min-SNR-gamma, Hang et al. 2023): the loss on the implied clean image weighted by
    min(SNR, gamma), SNR = alpha_bar / (1 - alpha_bar); since the epsilon MSE is the x0 MSE times SNR and the v
    MSE is it times (SNR + 1), the weight is min(SNR, gamma) / SNR for "epsilon" and min(SNR, gamma) / (SNR + 1)
    for "v_prediction". "capped_v": the x0 weight of the plain v-prediction MSE, SNR + 1, capped at gamma:
    min(SNR + 1, gamma) (1 at high noise like plain v-MSE, where Min-SNR's weight SNR starves the global layout;
    gamma at low noise like Min-SNR, so fine speckle does not dominate), i.e. min(SNR + 1, gamma) / (SNR + 1) on
    the v MSE and min(SNR + 1, gamma) / SNR on the epsilon MSE."""
    if kind == "none":
        return torch.ones_like(alpha_bar)
    if kind not in ("min_snr", "capped_v"):
        raise SonoshiftError(f"unknown loss weighting {kind!r} (known: none, min_snr, capped_v).")
    snr = alpha_bar / (1 - alpha_bar)
    x0_weight = snr.clamp(max=gamma) if kind == "min_snr" else (snr + 1).clamp(max=gamma)
    return x0_weight / (snr if prediction == "epsilon" else snr + 1)


__all__ = ["SAMPLERS", "loss_weights", "sampling_scheduler", "training_scheduler"]
