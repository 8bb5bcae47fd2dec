"""Sampling pipeline (diffusers style): a denoiser + a swappable scheduler, called with conditions.

``pipeline = load_synthesizer(RUN); images = pipeline(plane="brain", ga=24.0, n=8, generator=g)`` returns
float (n, 1, H, W) in [-1, 1]. Classifier-free guidance: eps = eps_null + w (eps_cond - eps_null), where the
null branch has every condition replaced by its null token; w = 1 is the plain conditional model, w = 0 the
unconditional one. With a separate GA scale w_ga (``ga_guidance``) the guidance is split by condition:
eps = eps_null + w (eps_plane,scanner - eps_null) + w_ga (eps_all - eps_plane,scanner), three network passes
per step (w_ga = w is the joint form above). The sampler (DPM-Solver++, DDIM, UniPC, DDPM) and step count can be
chosen per call. Image-guided sampling (SDEdit, Meng et al. 2022): with ``init`` images and ``strength`` s in
(0, 1], sampling starts from each init image noised to the sampler's timestep at the last ceil(s x steps) steps
and runs only those steps, so the result keeps the init's coarse layout and takes the conditions' content
(s = 1: from the noisiest step; s -> 0: the init image itself).
Randomness comes only from ``generator`` (one generator, or one per image so each image is reproducible alone).
In the latent variant the sampler runs on the autoencoder's latents and the result is decoded (after the
latent is renormalised to the unit scale the decoder was trained on).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from sonoshift.config import from_dict
from sonoshift.errors import SonoshiftError
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.dataset import Vocab
from sonoshift.synth.latent import LatentAutoencoder, normalise_latent
from sonoshift.synth.model import SynthUNet
from sonoshift.synth.schedulers import SAMPLERS, sampling_scheduler

Generator = torch.Generator | list[torch.Generator] | None


def _as_list(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise SonoshiftError(f"{what} has {len(value)} values for {n} images.")
        return list(value)
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return _as_list(value.tolist(), n, what)
    return [value] * n


class SynthPipeline:
    """A trained synthesizer. ``planes`` / ``scanners``: the names it knows; ``size``: output side
    (``image_size`` = (size, size)); ``autoencoder``: the latent variant's autoencoder (None: pixel space).

    Besides names, it can be called with a mapping of condition tensors (the model registry's Synthesizer
    form): ``pipeline({"plane": (B,) indices, "ga": (B,) weeks, "scanner": (B,) indices}, generator=g)``, where
    index 0 / NaN mean unknown and index k is ``planes[k - 1]`` / ``scanners[k - 1]``.
    """

    method = "synth"
    condition_names = ("plane", "ga", "scanner")

    def __init__(
        self, unet: SynthUNet, cfg: SynthConfig, vocab: Vocab, *, image_size: int,
        metadata: dict[str, Any] | None = None, autoencoder: LatentAutoencoder | None = None,
    ) -> None:
        self.unet = unet
        self.autoencoder = autoencoder
        self.cfg, self.vocab, self.size = cfg, vocab, int(image_size)
        self.image_size = (self.size, self.size)
        self.metadata = metadata or {}
        self.planes, self.scanners = vocab.planes, vocab.scanners

    @property
    def ga_range(self) -> tuple[float, float]:
        """The GA range in weeks the model's GA conditioning is defined over (``model.ga_range``)."""
        lo, hi = self.cfg.model.ga_range
        return float(lo), float(hi)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device: str | torch.device) -> SynthPipeline:
        """Move the networks to ``device``; returns self."""
        self.unet.to(device)
        if self.autoencoder is not None:
            self.autoencoder.to(device)
        return self

    @torch.no_grad()
    def sample_indices(
        self, plane: torch.Tensor, ga: torch.Tensor, scanner: torch.Tensor, *, generator: Generator = None,
        guidance: float | None = None, steps: int | None = None, sampler: str | None = None,
        progress: Any = None, ga_guidance: float | None = None, init: torch.Tensor | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """Samples for condition tensors (B,) (plane / scanner indices, 0 = unknown; GA weeks, NaN = unknown)
        -> (B, 1, H, W) in [-1, 1]. ``progress(i, total)`` is called after every step when given.
        ``ga_guidance``: GA's own guidance scale (default ``diffusion.ga_guidance``; None = joint guidance).
        ``init`` (B, 1, H, W) in [-1, 1] and ``strength``: image-guided sampling (module docstring)."""
        d = self.cfg.diffusion
        guidance = d.guidance if guidance is None else float(guidance)
        ga_guidance = d.ga_guidance if ga_guidance is None else float(ga_guidance)
        split = ga_guidance is not None and ga_guidance != guidance
        steps = d.steps if steps is None else int(steps)
        sampler = sampler or d.sampler
        if sampler not in SAMPLERS:
            raise SonoshiftError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)}).")
        if steps < 1:
            raise SonoshiftError(f"steps must be >= 1, got {steps}.")
        dev = self.device
        n = plane.shape[0]
        plane, scanner = plane.to(dev, torch.int64), scanner.to(dev, torch.int64)
        ga = ga.to(dev, torch.float32)
        sched = sampling_scheduler(sampler, d)
        sched.set_timesteps(steps, device=dev)
        dtype = next(self.unet.parameters()).dtype
        ae = self.autoencoder
        shape = (n, *ae.latent_shape(self.size)) if ae is not None else (n, 1, self.size, self.size)
        x = randn_tensor(shape, generator=generator, device=dev, dtype=dtype)
        timesteps = sched.timesteps
        if init is None:
            x = x * sched.init_noise_sigma
        else:
            timesteps = self._image_guided_start(sched, init, strength, shape)
            if not len(timesteps):
                return init.float().clamp(-1, 1)
            x = sched.add_noise(init.to(dev, dtype), x, timesteps[:1].repeat(n))
        was_training = self.unet.training
        self.unet.eval()
        guided = guidance != 1.0 or split
        k = 3 if split else 2
        if guided:  # branches: all null, [plane + scanner with GA null,] all conditions
            nan = torch.full_like(ga, math.nan)
            plane2 = torch.cat([torch.zeros_like(plane), *([plane] if split else []), plane])
            ga2 = torch.cat([nan, *([nan] if split else []), ga])
            scanner2 = torch.cat([torch.zeros_like(scanner), *([scanner] if split else []), scanner])
        total = len(timesteps)
        step_kw = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
        for i, t in enumerate(timesteps):
            inp = sched.scale_model_input(x, t)
            tt = t.expand(k * n if guided else n).to(dev)
            if guided and split:
                out_null, out_ps, out_all = self.unet(torch.cat([inp] * 3), tt, plane2, ga2, scanner2).chunk(3)
                out = out_null + guidance * (out_ps - out_null) + ga_guidance * (out_all - out_ps)
            elif guided:
                out = self.unet(torch.cat([inp, inp]), tt, plane2, ga2, scanner2)
                out_null, out_cond = out.chunk(2)
                out = out_null + guidance * (out_cond - out_null)
            else:
                out = self.unet(inp, tt, plane, ga, scanner)
            x = sched.step(out, t, x, return_dict=False, **step_kw)[0]  # UniPC is deterministic
            if progress is not None:
                progress(i + 1, total)
        if was_training:
            self.unet.train()
        if ae is not None:
            x = ae.decode(normalise_latent(x.to(next(ae.parameters()).dtype)))
        return x.float().clamp(-1, 1)

    def _image_guided_start(self, sched: Any, init: torch.Tensor, strength: float, shape: tuple) -> torch.Tensor:
        """The timesteps an image-guided sample runs (the last ceil(strength x steps) of ``sched``'s), with the
        scheduler told where it begins; refuses what it cannot start from."""
        if self.autoencoder is not None:
            raise SonoshiftError("image-guided sampling (init images) is not supported by a latent synthesizer.")
        if tuple(init.shape) != tuple(shape):
            raise SonoshiftError(f"init images must be {tuple(shape)}, got {tuple(init.shape)}.")
        if not (0.0 <= strength <= 1.0):
            raise SonoshiftError(f"strength must be in [0, 1], got {strength}.")
        if not torch.isfinite(init).all():
            raise SonoshiftError("init images contain NaN or infinite values.")
        total = len(sched.timesteps)
        begin = total - math.ceil(strength * total - 1e-9)
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        return sched.timesteps[begin:]

    def conditions(
        self, n: int, plane: str | Sequence[str | None] | None = None, ga: float | Sequence[float] | None = None,
        scanner: str | Sequence[str | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Names / weeks (one value, or one per image; None = unknown) -> index / GA tensors (n,)."""
        p = torch.tensor([self.vocab.plane_index(v) for v in _as_list(plane, n, "plane")], dtype=torch.int64)
        s = torch.tensor([self.vocab.scanner_index(v) for v in _as_list(scanner, n, "scanner")], dtype=torch.int64)
        g = torch.tensor([math.nan if v is None else float(v) for v in _as_list(ga, n, "ga")], dtype=torch.float32)
        return p, g, s

    def __call__(
        self, plane: str | Sequence[str | None] | None = None, ga: float | Sequence[float] | None = None,
        n: int = 1, *, scanner: str | Sequence[str | None] | None = None, generator: Generator = None,
        guidance: float | None = None, steps: int | None = None, sampler: str | None = None,
        batch_size: int = 64, progress: Any = None, ga_guidance: float | None = None,
        init: torch.Tensor | None = None, strength: float = 1.0,
    ) -> torch.Tensor:
        """``n`` images (n, 1, H, W) in [-1, 1] for the conditions (None = unknown). ``generator``: one
        torch.Generator, or a list of ``n`` (one per image: image i depends only on generator i). ``init``
        (n, 1, H, W) and ``strength``: image-guided sampling (module docstring)."""
        if isinstance(plane, dict):  # {"plane", "ga", "scanner"} tensors; missing keys = unknown
            cond = plane
            b = len(next(iter(cond.values())))
            return self.sample_indices(
                torch.as_tensor(cond.get("plane", torch.zeros(b)), dtype=torch.int64),
                torch.as_tensor(cond.get("ga", torch.full((b,), math.nan)), dtype=torch.float32),
                torch.as_tensor(cond.get("scanner", torch.zeros(b)), dtype=torch.int64),
                generator=generator, guidance=guidance, steps=steps, sampler=sampler, progress=progress,
                ga_guidance=ga_guidance, init=init, strength=strength)
        if n < 1:
            raise SonoshiftError(f"n must be >= 1, got {n}.")
        p, g, s = self.conditions(n, plane, ga, scanner)
        per_image = isinstance(generator, (list, tuple))
        if per_image and len(generator) != n:
            raise SonoshiftError(f"got {len(generator)} generators for {n} images.")
        if not per_image:
            batch_size = n  # one generator: one batch, so the result does not depend on the batch size
        out = []
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            gen = list(generator[lo:hi]) if per_image else generator
            out.append(self.sample_indices(p[lo:hi], g[lo:hi], s[lo:hi], generator=gen, guidance=guidance,
                                           steps=steps, sampler=sampler, progress=progress,
                                           ga_guidance=ga_guidance, strength=strength,
                                           init=None if init is None else init[lo:hi]))
        return torch.cat(out)


def pipeline_from_checkpoint(ckpt, device: torch.device | None = None, *, use_ema: bool = True) -> SynthPipeline:
    """The :class:`SynthPipeline` of a read ``ModelCheckpoint`` (the registry's ``load``), on ``device``
    (default CPU)."""
    from sonoshift.engine.checkpoint import load_module

    cfg = from_dict(SynthConfig, ckpt.state.get("config", {}))
    meta = ckpt.state.get("metadata", {})
    vocab = Vocab(tuple(meta.get("planes", ())), tuple(meta.get("scanners", ())))
    net = SynthUNet(cfg.model, channels=int(meta.get("channels", 1)), sample_size=int(meta["sample_size"]),
                    n_planes=len(vocab.planes), n_scanners=len(vocab.scanners))
    net = load_module(ckpt, "unet", net, prefer_ema=use_ema).eval().requires_grad_(False)
    ae = None
    if cfg.latent.enabled:
        ae = load_module(ckpt, "autoencoder", LatentAutoencoder(cfg.latent), prefer_ema=use_ema)
        ae = ae.eval().requires_grad_(False)
    pipe = SynthPipeline(net, cfg, vocab, image_size=int(meta["image_size"][0]),
                         metadata={**meta, "checkpoint": str(ckpt.path), "step": ckpt.state.get("step")},
                         autoencoder=ae)
    return pipe.to(device or "cpu")


def load_synthesizer(path: str | Path, device: str | torch.device | None = None, *, use_ema: bool = True
                     ) -> SynthPipeline:
    """The synthesizer of a ``sonoshift train synth`` run (run folder, checkpoint folder or model file),
    with EMA weights by default, on ``device`` (default CPU)."""
    from sonoshift.methods import load_model

    return load_model(path, device, kind="synthesizer", use_ema=use_ema)


__all__ = ["SynthPipeline", "load_synthesizer", "pipeline_from_checkpoint"]
