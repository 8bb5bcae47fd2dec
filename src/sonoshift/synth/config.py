"""The synthesizer's configuration (YAML: configs/cpu/synth.yaml, configs/gpu/synth_128.yaml, synth_256.yaml).

Frozen dataclasses read by ``sonoshift.config.load_config``; ``train:`` is the shared engine's EngineConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sonoshift.config import NonNegFloat, NonNegInt, PosFloat, PosInt, UnitFloat, Validated
from sonoshift.engine.loop import EngineConfig

# Plane names of the simulator and the public sets mapped to one vocabulary (FETAL_PLANES_DB "Fetal brain",
# African "brain" and the simulator's "head" are the same trans-thalamic-like head plane).
DEFAULT_PLANE_ALIASES: dict[str, str] = {
    "head": "brain",
    "Fetal brain": "brain",
    "Fetal abdomen": "abdomen",
    "Fetal femur": "femur",
    "Fetal thorax": "thorax",
    "Maternal cervix": "cervix",
    "Other": "other",
}


@dataclass(frozen=True)
class SynthData(Validated):
    """Which frames train the synthesizer.

    paths: prepared datasets combined with the one given by ``--data`` (e.g. ``data.paths=[hc18,fpdb]``). split: the split read from each.
    size: frames are resized to size x size (bilinear). plane_aliases: raw plane label -> vocabulary name.
    fill_plane: dataset name (``dataset.json`` spec name, else the folder name) -> plane given to its frames
    that have none (HC18 holds head images only). planes / scanners: the vocabularies; empty = every value seen
    in the data (sorted). A frame whose plane is outside ``planes`` gets the null token. balance_planes: every
    plane is drawn equally often (the simulator's sweeps are ~90% "other" frames). hflip: mirror each training
    image left-right with probability 1/2 (drawn from the method's generator; augmentation for small real sets).
    """

    paths: tuple[str, ...] = ()
    split: str = "train"
    size: PosInt = 64
    plane_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PLANE_ALIASES))
    fill_plane: dict[str, str] = field(default_factory=lambda: {"hc18": "brain"})
    planes: tuple[str, ...] = ()
    scanners: tuple[str, ...] = ()
    balance_planes: bool = True
    hflip: bool = False


@dataclass(frozen=True)
class SynthModel(Validated):
    """The denoiser: a one-channel diffusers UNet2DModel in pixel space. ``attention``: per resolution level, whether its blocks carry self-attention. ``ga_scale``
    multiplies GA in weeks before its sinusoidal embedding (10: 0.1-week steps are like one diffusion step).
    ``patch``: the U-Net sees ``patch`` x ``patch`` pixel blocks as channels (pixel unshuffle; 2 makes a 64 px
    model run at 32 x 32 with 4 channels, about 4x cheaper on a CPU; 1 = plain pixels). ``time_norm``: how the
    time + condition embedding enters each ResNet block: "default" adds it, "scale_shift" scales and shifts the
    normalised features with it (FiLM; stronger conditioning).

    ``ga_embedding``: "sinusoidal" (time-step sinusoid of ``ga * ga_scale``, then an MLP) or "fourier" (GA mapped
    linearly from ``ga_range`` weeks to [0, 1], then ``ga_frequencies`` low sine/cosine pairs (periods 2 to
    2 / ``ga_frequencies`` of the range) and the value itself, then an MLP): smooth in GA, so GAs between the few
    training patients' values interpolate instead of being read as arbitrary codes. ``condition_norm``: each
    condition's embedding (plane row, scanner row, GA MLP output) is RMS-normalised to 1 before the sum, so no
    condition drowns the others (at N(0, 1) plane rows the untuned GA MLP output was ~10x smaller and GA was
    ignored)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: PosInt = 1
    attention: tuple[bool, ...] = (False, False, True, True)
    patch: PosInt = 1
    attention_head_dim: PosInt = 32
    norm_num_groups: PosInt = 8
    dropout: UnitFloat = 0.0
    ga_scale: PosFloat = 10.0
    time_norm: Literal["default", "scale_shift"] = "default"
    ga_embedding: Literal["sinusoidal", "fourier"] = "sinusoidal"
    ga_range: tuple[float, float] = (16.0, 40.0)
    ga_frequencies: PosInt = 8
    condition_norm: bool = False


@dataclass(frozen=True)
class SynthDiffusion(Validated):
    """Training noise schedule (DDPM) and the default sampler.

    prediction: what the network predicts ("epsilon" or "v_prediction"); beta_schedule: diffusers name.
    sampler: "dpmpp" (DPM-Solver++ 2M), "ddim", "unipc" or "ddpm"; steps and guidance: sampling defaults;
    ga_guidance: GA's own guidance scale (None: one joint scale for all conditions; see ``synth/pipeline.py``).
    loss_weight: "none" (plain MSE) or "min_snr" (Min-SNR-gamma, Hang et al. 2023: each time step's loss weighted
    so that the implied x0 error has weight min(SNR, gamma); faster convergence) or "capped_v" (x0 weight
    min(SNR + 1, gamma): plain v-MSE at high noise, Min-SNR at low noise; ``schedulers.loss_weights``). lr_warmup_steps: linear LR
    warm-up; lr_schedule: "constant" after it, or "cosine" decay to 0 at the last step.
    """

    num_train_timesteps: PosInt = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    prediction: Literal["epsilon", "v_prediction"] = "epsilon"
    sampler: Literal["dpmpp", "ddim", "unipc", "ddpm"] = "dpmpp"
    steps: PosInt = 20
    guidance: NonNegFloat = 2.0
    ga_guidance: NonNegFloat | None = None
    loss_weight: Literal["none", "min_snr", "capped_v"] = "none"
    min_snr_gamma: PosFloat = 5.0
    lr_warmup_steps: NonNegInt = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"


@dataclass(frozen=True)
class SynthCondition(Validated):
    """Condition dropout for classifier-free guidance: all conditions are replaced by their null tokens with
    probability ``drop_all``; otherwise each one independently with ``drop_each`` (so partial conditions,
    e.g. plane without GA, are learned too). ``drop_plane`` / ``drop_ga`` / ``drop_scanner`` replace
    ``drop_each`` for one condition when set. ``ga_jitter`` (weeks, 0 = off): Gaussian noise of that standard
    deviation added to every known training GA label, so a few patients' GAs spread into a continuum."""

    drop_all: UnitFloat = 0.1
    drop_each: UnitFloat = 0.1
    drop_plane: UnitFloat | None = None
    drop_ga: UnitFloat | None = None
    drop_scanner: UnitFloat | None = None
    ga_jitter: NonNegFloat = 0.0


@dataclass(frozen=True)
class SynthLatent(Validated):
    """The latent variant (``enabled``): the first ``autoencoder_steps`` steps of the run train a small autoencoder
    (``synth/latent.py``: diffusers' VAE encoder/decoder with ``block_out_channels`` per level, downsampling by
    2^(levels - 1), ``channels`` latent channels, mid-block attention when ``attention``) with L1 reconstruction
    at learning rate ``lr`` and latent noise ``noise``; the remaining ``train.max_steps - autoencoder_steps``
    steps train the diffusion model on its frozen latents. Off by default (pixel space)."""

    enabled: bool = False
    channels: PosInt = 4
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: PosInt = 1
    norm_num_groups: PosInt = 8
    attention: bool = False
    autoencoder_steps: NonNegInt = 1000
    lr: PosFloat = 1.0e-3
    noise: NonNegFloat = 0.1


@dataclass(frozen=True)
class SynthConfig(Validated):
    """The full synthesizer run configuration."""

    name: str = "synth"
    data: SynthData = field(default_factory=SynthData)
    model: SynthModel = field(default_factory=SynthModel)
    diffusion: SynthDiffusion = field(default_factory=SynthDiffusion)
    condition: SynthCondition = field(default_factory=SynthCondition)
    latent: SynthLatent = field(default_factory=SynthLatent)
    train: EngineConfig = field(default_factory=EngineConfig)


__all__ = ["DEFAULT_PLANE_ALIASES", "SynthCondition", "SynthConfig", "SynthData", "SynthDiffusion", "SynthLatent", "SynthModel"]
