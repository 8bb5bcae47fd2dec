"""The cascade CycleGAN -> diffusion: a DDGAN refiner behind a trained CycleGAN (engine method and translator).

Training: the refiner's condition is the CycleGAN round trip of a target frame, G_{S->T}(G_{T->S}(x_0)), and
its goal is x_0 itself, so it learns to turn "what the CycleGAN makes" into "what the target scanner makes".
Inference: source frame -> G_{S->T} -> refiner (condition, and partial-start image when ``schedule.start`` is
"partial"). The CycleGAN generators are stored in the cascade's checkpoints, so one file translates.

Joint fine-tuning (``joint.enabled``): the CycleGAN generators and discriminators train too, with their own
losses (LSGAN, cycle, identity, history pools), and a content loss between the refiner's prediction of x_0 and
x_0 flows back through the round trip into both generators: MSE + LPIPS when LPIPS weights load, otherwise
MSE + (1 - SSIM); the checkpoint metadata records which (``content_loss``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from torch import nn

from sonoshift.config import NonNegFloat, PosFloat, Range, Validated, from_dict, to_dict
from sonoshift.data.translation import unpaired_frames
from sonoshift.diffusion.schedule import schedule_from_config
from sonoshift.engine.checkpoint import ModelCheckpoint, load_module
from sonoshift.engine.loop import StepContext, TrainResult
from sonoshift.errors import SonoshiftError
from sonoshift.methods import MethodSpec, register, train_method
from sonoshift.methods.cyclegan import (
    CycleGANLoss,
    CycleGANModel,
    build_generator,
    discriminator_phase,
    generator_pass,
)
from sonoshift.methods.ddgan import (
    DDGAN,
    DDGANConfig,
    DDGANTranslator,
    FrozenCycleGAN,
    TargetFrames,
    fitted_anchor,
    load_cyclegan,
    rebuild_generator,
    select,
)
from sonoshift.methods.anchor import Anchor, anchor_from_metadata, anchored_condition
from sonoshift.methods.output_gamma import load_critic
from sonoshift.models import PatchGAN, init_normal
from sonoshift.objectives import CycleGANLossWeights, ImagePool
from sonoshift.objectives.ddgan import (
    ContentLoss,
    discriminator_loss,
    g_nonsaturating_loss,
    generate_pair,
    structure_loss,
)
from sonoshift.seeding import make_generator


@dataclass(frozen=True)
class JointConfig(Validated):
    """Joint fine-tuning of the CycleGAN with the refiner (off by default: the CycleGAN stays frozen).

    lr_cyclegan, beta1, beta2: Adam for the CycleGAN generators and discriminators; cyclegan_loss: their loss
    weights and pool; cyclegan_weight: factor on the CycleGAN generator loss in the joint generator loss;
    content_weight: factor on the content loss; content: "auto" | "mse_lpips" | "mse_ssim"; lpips_net,
    lpips_weights: which LPIPS and where its weights are (empty = the metrics package's default places).
    """

    enabled: bool = False
    lr_cyclegan: PosFloat = 2e-5
    beta1: Annotated[float, Range(0, 1, hi_open=True)] = 0.5
    beta2: Annotated[float, Range(0, 1, hi_open=True)] = 0.999
    cyclegan_loss: CycleGANLoss = field(default_factory=CycleGANLoss)
    cyclegan_weight: NonNegFloat = 1.0
    content_weight: NonNegFloat = 1.0
    content: Literal["auto", "mse_lpips", "mse_ssim"] = "auto"
    lpips_net: str = "alex"
    lpips_weights: str = ""


@dataclass(frozen=True)
class CascadeConfig(DDGANConfig, Validated):
    """The cascade run configuration: a DDGAN configuration plus ``joint`` (configs/cpu/cascade.yaml).

    round_trip_noise: std ([-1, 1] units) of Gaussian noise added to the synthetic source G_{T->S}(x_0) before
    G_{S->T} makes the refiner's training condition (0 = the plain round trip). A CycleGAN hides what it needs
    to undo its own translation in low-amplitude detail (the round trip is ~24 dB from x_0, a translated real
    source ~18 dB from its truth); the noise destroys that hidden detail, so the training conditions carry
    errors like the ones the refiner sees at test time ("degraded round trips").
    """

    name: str = "cascade"
    joint: JointConfig = field(default_factory=JointConfig)
    round_trip_noise: NonNegFloat = 0.0


def _discriminators(cg: FrozenCycleGAN, model: CycleGANModel, seed: int) -> dict[str, nn.Module]:
    """D_a, D_b of the CycleGAN checkpoint (fresh N(0, gain) ones when the file holds none)."""
    from sonoshift.engine.checkpoint import read_model

    ckpt = read_model(cg.path)
    g = make_generator(seed, 4000)
    out = {}
    for name in ("D_a", "D_b"):
        d = PatchGAN(1, ndf=model.ndf, n_layers=model.d_layers)
        if ckpt.has_module(name):
            out[name] = load_module(ckpt, name, d, prefer_ema=False)
        else:
            out[name] = init_normal(d, g, model.init_gain)
    return out


class Cascade(DDGAN):
    """The refiner (G, D as in DDGAN) with the CycleGAN generators ``G_ab``, ``G_ba`` as stored modules.

    Frozen mode: G_ab and G_ba only make the condition. Joint mode: they train (optimiser "CG"), with D_a, D_b
    (optimiser "CG_D"), the CycleGAN losses and the content loss.
    """

    name = "cascade"
    condition_kind = "cyclegan_round_trip"

    def __init__(
        self, cfg: CascadeConfig, device: torch.device, image_size: tuple[int, int], cyclegan: FrozenCycleGAN,
        rank: int = 0, hm: Anchor | None = None,
    ) -> None:
        super().__init__(cfg, device, image_size, cyclegan, rank, hm=hm)
        j = cfg.joint
        self.modules["G_ab"], self.modules["G_ba"] = cyclegan.G_ab, cyclegan.G_ba
        self.content: ContentLoss | None = None
        self.pools: dict[str, ImagePool] = {}
        if not j.enabled:
            return
        for k in ("G_ab", "G_ba"):
            self.modules[k].train().requires_grad_(True)
        for k, d in _discriminators(cyclegan, cyclegan.config.model, cfg.train.seed).items():
            self.modules[k] = d.to(device).train()
        betas = (j.beta1, j.beta2)
        gens = itertools.chain(self.modules["G_ab"].parameters(), self.modules["G_ba"].parameters())
        dis = itertools.chain(self.modules["D_a"].parameters(), self.modules["D_b"].parameters())
        self.optimizers["CG"] = torch.optim.Adam(gens, j.lr_cyclegan, betas=betas)
        self.optimizers["CG_D"] = torch.optim.Adam(dis, j.lr_cyclegan, betas=betas)
        w = j.cyclegan_loss
        self.cg_weights = CycleGANLossWeights(w.cycle, w.identity, w.discriminator)
        self.pools = {
            "pool_a": ImagePool(w.pool_size, make_generator(cfg.train.seed, 1000 + rank)),
            "pool_b": ImagePool(w.pool_size, make_generator(cfg.train.seed, 2000 + rank)),
        }
        self.content = ContentLoss(j.content, j.lpips_net, j.lpips_weights).to(device)

    def condition_channels(self) -> int:
        """1 (the CycleGAN output), or 2 with the histogram anchor (hm(source), the CycleGAN output)."""
        return 1 if self.hm is None else 2

    def condition(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The round trip G_{S->T}(G_{T->S}(x0)) of clean targets (the synthetic source degraded by
        ``round_trip_noise`` when set, noise from the step generator), no grad. With ``anchor:
        histogram_match``: [hm(synthetic source), round trip] (2 channels)."""
        with torch.no_grad():
            y_s = self.modules["G_ba"](x0)
            sigma = self.cfg.round_trip_noise
            if sigma > 0:
                g = self.gen if generator is None else generator
                noise = torch.randn(y_s.shape, generator=g, device=y_s.device, dtype=y_s.dtype)
                y_s = (y_s + sigma * noise).clamp(-1.0, 1.0)
            return anchored_condition(self.hm, y_s, self.modules["G_ab"](y_s).clamp(-1.0, 1.0))

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """Frozen: the DDGAN step on the round-trip condition. Joint: see :meth:`_joint_step`."""
        if not self.cfg.joint.enabled:
            return super().train_step(batch, ctx)
        return self._joint_step(batch, ctx)

    def _joint_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """Refiner D update; joint generator update (refiner GAN + content + CycleGAN losses, through the round
        trip); CycleGAN D update on pooled fakes. Returns the mean losses of the step."""
        j = self.cfg.joint
        G, D = self.net["G"], self.net["D"]
        G_ab, G_ba, D_a, D_b = (self.modules[k] for k in ("G_ab", "G_ba", "D_a", "D_b"))
        micro = ctx.micro_batches(batch)
        logs: dict[str, list[float]] = {}

        def log(**kv: float) -> None:
            for k, v in kv.items():
                logs.setdefault(k, []).append(float(v))

        gamma = self._r1_gamma(ctx.step)
        for mb in micro:
            with ctx.autocast():
                cond = self.condition(mb["target"])
                loss_d, parts = discriminator_loss(G, D, self.schedule, mb["target"], cond, self.gen, gamma)
            ctx.backward(loss_d)
            log(loss_D=loss_d.item(), **parts)
        ctx.optimizer_step("D")

        frozen = [D, D_a, D_b]
        for m in frozen:
            m.requires_grad_(False)
        fakes = []
        try:
            for mb in micro:
                b = mb["target"]
                with ctx.autocast():
                    g = generator_pass(G_ab, G_ba, D_a, D_b, mb["source"], b, self.cg_weights)
                    # rec_b = G_ab(G_ba(b)) is the refiner's condition, with gradients into both generators.
                    cond = anchored_condition(self.hm, g.fake_a.detach(), g.rec_b)
                    p = generate_pair(G, self.schedule, b, cond, self.gen)
                    d_cond = cond if D.cfg.see_condition else None
                    loss_gan = g_nonsaturating_loss(D(p["x_t_fake"], p["x_next"], p["t"], d_cond))
                    loss_content = self.content(p["x0_pred"], b)
                    loss = loss_gan + j.content_weight * loss_content + j.cyclegan_weight * g.loss
                    if self.cfg.loss.structure:
                        loss = loss + self.cfg.loss.structure * structure_loss(p["x0_pred"], cond[:, :1])
                ctx.backward(loss)
                fakes.append((g.fake_a.detach(), g.fake_b.detach()))
                log(loss_G=loss_gan.item(), content=loss_content.item(), loss_CG=g.loss.item(),
                    **{k: v.item() for k, v in g.parts.items()})
        finally:
            for m in frozen:
                m.requires_grad_(True)
        ctx.optimizer_step("G")
        ctx.optimizer_step("CG")

        for loss_da, loss_db in discriminator_phase(D_a, D_b, self.pools, micro, fakes, self.cg_weights, ctx, "CG_D"):
            log(D_a=loss_da.item(), D_b=loss_db.item())
        return {k: sum(v) / len(v) for k, v in logs.items()}

    def lr_factors(self, step: int, total_steps: int) -> dict[str, float]:
        """The refiner's schedule for every optimiser (CycleGAN fine-tuning decays with it)."""
        f = super().lr_factors(step, total_steps)["G"]
        return {name: f for name in self.optimizers}

    def partial_init(self, cond: torch.Tensor) -> torch.Tensor:
        """At inference the partial start noises the residual's base (the CycleGAN output, or hm(source)); in
        training its stand-in is the first condition channel."""
        return cond[:, :1]

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The step generator and, in joint mode, the fake pools."""
        tensors, state = super().extra_state()
        for name, pool in self.pools.items():
            t, s = pool.state(name)
            tensors.update(t)
            state.update(s)
        return tensors, state

    def load_extra_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""
        super().load_extra_state(tensors, state)
        device = next(self.modules["G"].parameters()).device
        for name, pool in self.pools.items():
            pool.load_state(name, tensors, state, device)

    def metadata(self) -> dict[str, Any]:
        """DDGAN metadata plus the CycleGAN architecture (to rebuild G_ab) and the content loss used."""
        meta = super().metadata()
        meta["cyclegan_model"] = to_dict(self.cyclegan.config.model)
        meta["joint"] = self.cfg.joint.enabled
        meta["content_loss"] = self.content.name if self.content is not None else None
        meta["content_loss_reason"] = self.content.reason if self.content is not None else None
        return meta


def build(cfg: CascadeConfig, dataset: Any, device: torch.device, rank: int = 0) -> Cascade:
    """A cascade for ``dataset`` (items with "target", and "source" in joint mode) on ``device``."""
    if cfg.joint.enabled and "source" not in dataset[0]:
        raise SonoshiftError("joint cascade fine-tuning needs a dataset with source and target frames.")
    if cfg.task_critic:
        load_critic(cfg.task_critic, cfg.data.target_domain)  # a wrong critic stops here, not after training
    size = tuple(dataset[0]["target"].shape[-2:])
    return Cascade(cfg, device, size, load_cyclegan(cfg.cyclegan, device), rank=rank, hm=fitted_anchor(cfg, dataset))


class CascadeTranslator(DDGANTranslator):
    """source -> G_{S->T} -> refiner; same interface as :class:`DDGANTranslator` (``uncertainty`` included)."""

    method = "cascade"


def load_translator(
    ckpt: ModelCheckpoint, device: torch.device | None = None, *, use_ema: bool = True
) -> CascadeTranslator:
    """The cascade translator of a checkpoint (CycleGAN generator and refiner both read from it)."""
    cfg = from_dict(CascadeConfig, ckpt.state.get("config", {}))
    meta = ckpt.state.get("metadata", {})
    G, size = rebuild_generator(ckpt, cfg.generator, use_ema)
    cg_model = from_dict(CycleGANModel, meta.get("cyclegan_model", {}))
    G_ab = load_module(ckpt, "G_ab", build_generator(cg_model), prefer_ema=False)
    if device is not None:
        G.to(device)
        G_ab.to(device)
    src, tgt = meta.get("source_domain", cfg.data.source_domain), meta.get("target_domain", cfg.data.target_domain)
    return CascadeTranslator(
        G, schedule_from_config(cfg.schedule), cfg.schedule.start, size, src, tgt, pre=G_ab,
        anchor=anchor_from_metadata(meta.get("anchor"), src, tgt, size), output_gain=cfg.output_gain,
        output_gamma=float(meta.get("output_gamma", 1.0)),
    )


def training_data(data: Path, cfg: CascadeConfig) -> Any:
    """Target frames (frozen CycleGAN), or unpaired source/target frames for joint fine-tuning."""
    if cfg.joint.enabled:
        return unpaired_frames(data, cfg.data, cfg.train.seed)
    return TargetFrames(data, cfg.data, seed=cfg.train.seed)


SPEC = register(MethodSpec(
    name="cascade", kind="translator", config=CascadeConfig, dataset=training_data, build=build,
    load=load_translator, select=select,
    summary="Train the CycleGAN -> diffusion cascade: a refiner conditioned on the CycleGAN round trip of each "
            "target (joint.enabled=true fine-tunes the CycleGAN).",
    default_config="configs/cpu/cascade.yaml", needs={"cyclegan": "cyclegan"}, study_order=2,
))


def train_cascade(
    data: str | Path, cfg: CascadeConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train the cascade's refiner (and, with ``joint.enabled``, fine-tune the CycleGAN) on the prepared
    dataset ``data`` into the run folder ``out`` (API of `sonoshift train cascade`)."""
    return train_method("cascade", data, out, cfg=cfg, resume=resume, progress=progress)


__all__ = [
    "Cascade", "CascadeConfig", "CascadeTranslator", "JointConfig", "build", "load_translator", "train_cascade",
]
