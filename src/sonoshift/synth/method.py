"""The synthesizer as an engine method (docs/engine.md §1): one denoiser, one Adam, an EMA, one DDPM loss.

A step: draw t uniformly on the 1000-step grid and Gaussian noise from the method's own generator, noise the
image with the DDPM forward process, drop conditions for classifier-free guidance, and regress
the noise (or v) with MSE. Randomness comes only from ``self.gen`` (seeded by seed + 3000 + rank, saved in every
checkpoint), so resume is exact.

Latent variant (``latent.enabled``): the first ``latent.autoencoder_steps`` steps train the autoencoder
(``synth/latent.py``, L1 reconstruction, its own optimiser); afterwards it is frozen and the same DDPM loss is
computed on its latents instead of pixels. Both live in one run folder and one checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sonoshift.engine.ema import EMA
from sonoshift.errors import SonoshiftError
from sonoshift.engine.loop import MethodBase, StepContext
from sonoshift.seeding import make_generator
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.dataset import Vocab
from sonoshift.synth.latent import LatentAutoencoder, reconstruction_loss
from sonoshift.synth.model import SynthUNet
from sonoshift.synth.schedulers import loss_weights, training_scheduler


def drop_conditions(
    plane: torch.Tensor, ga: torch.Tensor, scanner: torch.Tensor, drop_all: float, drop_each: float,
    generator: torch.Generator, *, drop_plane: float | None = None, drop_ga: float | None = None,
    drop_scanner: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace conditions by their null tokens (0 / NaN): all of a sample's with probability ``drop_all``,
    else each independently with ``drop_each`` (or its own ``drop_plane`` / ``drop_ga`` / ``drop_scanner``).
    Draws 4 uniforms per sample from ``generator``."""
    u = torch.rand((plane.shape[0], 4), generator=generator, device=generator.device).to(plane.device)
    every = u[:, 0] < drop_all

    def own(v: float | None) -> float:
        return drop_each if v is None else v

    keep_p = ~(every | (u[:, 1] < own(drop_plane)))
    keep_g = ~(every | (u[:, 2] < own(drop_ga)))
    keep_s = ~(every | (u[:, 3] < own(drop_scanner)))
    return (
        torch.where(keep_p, plane, torch.zeros_like(plane)),
        torch.where(keep_g, ga, torch.full_like(ga, math.nan)),
        torch.where(keep_s, scanner, torch.zeros_like(scanner)),
    )


def jitter_ga(ga: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """GA weeks (B,) plus N(0, std^2) noise where known (NaN stays NaN). ``std`` 0 returns ``ga`` unchanged and
    draws nothing from ``generator`` (runs without jitter keep their random stream)."""
    if std <= 0:
        return ga
    noise = torch.randn(ga.shape, generator=generator, device=generator.device).to(ga.device, ga.dtype)
    return ga + std * noise


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (B, C, H, W) mirrored left-right with probability 1/2 (one uniform per image from
    ``generator``): data augmentation for small real sets (``data.hflip``; a mirrored fetal plane is a plane
    seen from the other side, and the anatomy labels do not change)."""
    u = torch.rand((x.shape[0],), generator=generator, device=generator.device).to(x.device)
    return torch.where((u < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)


class Synth(MethodBase):
    """Conditional DDPM training of a :class:`SynthUNet` in pixel space, or in the latent space of an
    autoencoder it trains first (``cfg.latent.enabled``)."""

    name = "synth"

    def __init__(self, cfg: SynthConfig, device: torch.device, vocab: Vocab, *, image_size: int, rank: int = 0
                 ) -> None:
        self.cfg, self.vocab, self.image_size = cfg, vocab, int(image_size)
        channels, size = 1, self.image_size
        t, lat = cfg.train, cfg.latent
        self.ae: LatentAutoencoder | None = None
        if lat.enabled:
            if t.max_steps and t.max_steps <= lat.autoencoder_steps:
                raise SonoshiftError(f"train.max_steps ({t.max_steps}) must exceed latent.autoencoder_steps "
                                     f"({lat.autoencoder_steps}): the diffusion model trains in the steps after it.")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(t.seed + 1)
                self.ae = LatentAutoencoder(lat).to(device).train()
            channels, size, _ = self.ae.latent_shape(self.image_size)
        self.channels, self.sample_size = channels, size
        with torch.random.fork_rng(devices=[]):  # diffusers initialises from the global generator: seed it
            torch.manual_seed(t.seed)            # here without disturbing the caller's stream
            net = SynthUNet(cfg.model, channels=channels, sample_size=size, n_planes=len(vocab.planes),
                            n_scanners=len(vocab.scanners)).to(device).train()
        self.modules: dict[str, nn.Module] = {"unet": net}
        self.net = torch.compile(net) if t.compile else net
        self.optimizers = {"unet": torch.optim.AdamW(net.parameters(), t.lr, (t.beta1, t.beta2), weight_decay=0.0)}
        if self.ae is not None:
            self.modules["autoencoder"] = self.ae
            self.optimizers["autoencoder"] = torch.optim.AdamW(self.ae.parameters(), lat.lr, (t.beta1, t.beta2),
                                                               weight_decay=0.0)
        self.ema = {"unet": EMA(net, t.ema_decay, t.ema_warmup)} if t.ema_decay > 0 else {}
        self.noise = training_scheduler(cfg.diffusion)
        self.alphas = self.noise.alphas_cumprod.to(device)
        self.gen = make_generator(t.seed, 3000 + rank, device)
        self.data_hash = ""
        self.datasets: list[str] = []
        self.dataset_names: list[str] = []
        self.pixel_size_mm: dict[str, float] = {}
        self.config_name: str | None = None

    def loss(self, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """The DDPM loss of one micro-batch (mean over pixels, or latent values, and samples)."""
        x0 = batch["image"]
        if self.cfg.data.hflip:
            x0 = random_hflip(x0, self.gen)
        if self.ae is not None:
            with torch.no_grad():
                x0 = self.ae.encode(x0)
        b = x0.shape[0]
        g = self.gen
        t = torch.randint(0, self.cfg.diffusion.num_train_timesteps, (b,), generator=g, device=g.device).to(x0.device)
        eps = torch.randn(x0.shape, generator=g, device=g.device).to(x0.device)
        a = self.alphas[t].view(b, 1, 1, 1).to(x0.dtype)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        d = self.cfg.diffusion
        target = eps if d.prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
        c = self.cfg.condition
        ga = jitter_ga(batch["ga"], c.ga_jitter, g)
        plane, ga, scanner = drop_conditions(batch["plane"], ga, batch["scanner"], c.drop_all, c.drop_each, g,
                                             drop_plane=c.drop_plane, drop_ga=c.drop_ga, drop_scanner=c.drop_scanner)
        with ctx.autocast():
            pred = self.net(xt, t, plane, ga, scanner)
        per = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
        return (per * loss_weights(a.view(b).float(), d.prediction, d.loss_weight, d.min_snr_gamma)).mean()

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One optimiser step over the micro-batches of ``batch``; returns {"loss": mean MSE}, or in the latent
        variant's first ``latent.autoencoder_steps`` steps {"ae_l1": mean L1} of the autoencoder's step."""
        if self.ae is not None and ctx.step < self.cfg.latent.autoencoder_steps:
            return self._autoencoder_step(batch, ctx)
        if self.ae is not None and self.ae.training:
            self.ae.eval().requires_grad_(False)
        total = 0.0
        for mb in ctx.micro_batches(batch):
            loss = self.loss(mb, ctx)
            ctx.backward(loss)
            total += float(loss.detach()) / ctx.accum_steps
        ctx.optimizer_step("unet")
        return {"loss": total}

    def _autoencoder_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        assert self.ae is not None
        total = 0.0
        for mb in ctx.micro_batches(batch):
            with ctx.autocast():
                loss = reconstruction_loss(self.ae, mb["image"], self.cfg.latent.noise, self.gen)
            ctx.backward(loss)
            total += float(loss.detach()) / ctx.accum_steps
        ctx.optimizer_step("autoencoder")
        return {"ae_l1": total}

    def lr_factors(self, step: int, total_steps: int) -> dict[str, float] | None:
        """Linear warm-up over ``diffusion.lr_warmup_steps``, then constant or cosine decay to 0 at the end.
        In the latent variant the diffusion schedule starts after ``latent.autoencoder_steps``, and the
        autoencoder's learning rate decays by a cosine over its own steps."""
        d = self.cfg.diffusion
        if self.ae is None and d.lr_warmup_steps == 0 and d.lr_schedule == "constant":
            return None  # the engine's schedule (train.decay_epochs)
        skip = self.cfg.latent.autoencoder_steps if self.ae is not None else 0
        s, total = max(0, step - skip), max(0, total_steps - skip)
        f = min(1.0, (s + 1) / d.lr_warmup_steps) if d.lr_warmup_steps > 0 else 1.0
        if d.lr_schedule == "cosine" and total > 0:
            f *= 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        if self.ae is None:
            return {"unet": f}
        n_ae = max(1, skip)
        return {"unet": f, "autoencoder": 0.5 * (1 + math.cos(math.pi * min(step, n_ae) / n_ae))}

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The noise generator's state, for exact resume."""
        return {"gen": self.gen.get_state()}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""
        self.gen.set_state(tensors["gen"].cpu())

    @torch.no_grad()
    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """TensorBoard rows: the real frames and EMA samples (DPM-Solver++, 20 steps) with their conditions."""
        from sonoshift.synth.pipeline import SynthPipeline

        net = self.ema["unet"].module if self.ema else self.modules["unet"]
        pipe = SynthPipeline(net, self.cfg, self.vocab, image_size=self.image_size, autoencoder=self.ae)
        g = make_generator(0, device=batch["image"].device)
        fake = pipe.sample_indices(batch["plane"], batch["ga"], batch["scanner"], generator=g, steps=20)
        self.modules["unet"].train()
        return {"real": batch["image"], "synthetic": fake}

    def metadata(self) -> dict[str, Any]:
        """What inference needs: vocabularies, sizes, training data, its hash and pixel size."""
        return {
            "planes": list(self.vocab.planes),
            "scanners": list(self.vocab.scanners),
            "image_size": [self.image_size, self.image_size],
            "channels": self.channels,
            "sample_size": self.sample_size,
            "latent": self.ae is not None,
            "data_hash": self.data_hash,
            "datasets": self.datasets,
            "dataset_names": self.dataset_names,
            "pixel_size_mm": self.pixel_size_mm,
            "config_name": self.config_name,
        }


__all__ = ["Synth", "drop_conditions", "jitter_ga", "random_hflip"]
