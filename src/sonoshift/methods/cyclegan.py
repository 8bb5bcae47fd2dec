"""CycleGAN as an engine method (docs/engine.md §1) and its translator (§5).

Domains: A = source (e.g. handheld), B = target (e.g. cart). ``G_ab``: A -> B, ``G_ba``: B -> A, ``D_a``/``D_b``
judge A/B images. One step = a generator phase (both generators, one Adam) then a discriminator phase (both
discriminators, one Adam) on fakes drawn through the 50-image pools, as in the reference implementation.

The step avoids needless work compared with a textbook step: discriminator parameters do not require grad in
the generator phase, each generator runs once on [fake input; identity input] stacked on the batch axis
(instance norm is per image, so this is exact), each discriminator runs once on [real; fake], losses are
computed without target tensors, and gradients are dropped with ``set_to_none``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from sonoshift.config import NonNegFloat, NonNegInt, PosFloat, PosInt, Validated, from_dict
from sonoshift.data.translation import TranslationData, unpaired_frames
from sonoshift.engine.checkpoint import ModelCheckpoint, load_module
from sonoshift.engine.ema import EMA
from sonoshift.engine.loop import EngineConfig, MethodBase, StepContext, TrainResult
from sonoshift.errors import SonoshiftError
from sonoshift.methods import MethodSpec, register, train_method
from sonoshift.methods.anchor import anchor_from_metadata, anchor_metadata
from sonoshift.methods.kinds import GeneratorTranslator
from sonoshift.models import PatchGAN, ResnetGenerator, init_normal
from sonoshift.objectives import (
    CycleGANLossWeights,
    ImagePool,
    discriminator_loss,
    generator_loss,
)
from sonoshift.seeding import make_generator


@dataclass(frozen=True)
class CycleGANModel(Validated):
    """Generator width/blocks/upsampling and PatchGAN width/depth (reference: 64, 9, transpose, 64, 3).
    ``fast_conv`` has no effect: it selected a Winograd 3x3 convolution that measured slower than PyTorch's own
    and was removed; the key stays so that configs and checkpoints that set it still load.
    ``arch``: "resnet" (reference) or "mobile_unet" (models/mobile_unet.py, width ngf, n_blocks blocks; the
    distilled student's network, trained here without a teacher as its baseline). ``anchor: histogram_match`` or
    ``depth_affine`` (mobile U-Net only): each generator is the anchored one of ``models/anchored.py`` (G_ab
    anchored on the map source -> target, G_ba on target -> source, fitted as the student's,
    ``methods.student.fit_student_anchor``), the anchored student's network without a teacher."""

    arch: Literal["resnet", "mobile_unet"] = "resnet"
    anchor: Literal["none", "histogram_match", "depth_affine"] = "none"
    ngf: PosInt = 64
    n_blocks: NonNegInt = 9
    upsample: Literal["transpose", "resize"] = "transpose"
    ndf: PosInt = 64
    d_layers: PosInt = 3
    init_gain: PosFloat = 0.02
    fast_conv: bool = True


@dataclass(frozen=True)
class CycleGANLoss(Validated):
    """Loss weights and the fake-history pool size (0 disables the pool)."""

    cycle: NonNegFloat = 10.0
    identity: NonNegFloat = 5.0
    discriminator: NonNegFloat = 0.5
    pool_size: NonNegInt = 50


@dataclass(frozen=True)
class CycleGANConfig(Validated):
    """The full CycleGAN run configuration (YAML: configs/paper/cyclegan.yaml, configs/cpu/cyclegan.yaml)."""

    name: str = "cyclegan"
    data: TranslationData = field(default_factory=TranslationData)
    model: CycleGANModel = field(default_factory=CycleGANModel)
    loss: CycleGANLoss = field(default_factory=CycleGANLoss)
    train: EngineConfig = field(default_factory=EngineConfig)


def build_generator(m: CycleGANModel, hm: Any = None) -> nn.Module:
    """A one-channel generator for the model settings ``m`` (not yet initialised); ``hm``: its fitted anchor
    when ``m.anchor`` is not "none"."""
    if m.anchor != "none":
        from sonoshift.methods.student import StudentModel, build_student

        return build_student(StudentModel(arch=m.arch, anchor=m.anchor, ch=m.ngf, n_blocks=m.n_blocks), hm)
    if m.arch == "mobile_unet":
        from sonoshift.models.mobile_unet import MobileUNet

        return MobileUNet(m.ngf, m.n_blocks)
    return ResnetGenerator(1, 1, ngf=m.ngf, n_blocks=m.n_blocks, upsample=m.upsample)


def _requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


# -- the two phases of a CycleGAN step, shared with the cascade's joint fine-tuning ----------------------------


@dataclass
class GeneratorPass:
    """One micro-batch through both generators: the total generator loss, its parts (detached), the fakes
    G_ba(b), G_ab(a) and the round trip ``rec_b`` = G_ab(G_ba(b)) (with gradients)."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    fake_a: torch.Tensor
    fake_b: torch.Tensor
    rec_b: torch.Tensor


def generator_pass(
    G_ab: nn.Module, G_ba: nn.Module, D_a: nn.Module, D_b: nn.Module, a: torch.Tensor, b: torch.Tensor,
    weights: CycleGANLossWeights,
) -> GeneratorPass:
    """The generator phase's forward on source ``a`` and target ``b`` (B,1,H,W in [-1,1]): each generator runs
    once on [translate; identity] stacked on the batch axis (exact: instance norm is per image), then the cycle
    and the discriminators' verdicts on the fakes. Call inside ``ctx.autocast()``."""
    n = a.shape[0]
    if weights.identity > 0:  # one pass per generator: [translate; identity]
        fake_b, idt_a = G_ab(torch.cat([a, b])).split(n)
        fake_a, idt_b = G_ba(torch.cat([b, a])).split(n)
    else:
        fake_b, idt_a = G_ab(a), None
        fake_a, idt_b = G_ba(b), None
    rec_a, rec_b = G_ba(fake_b), G_ab(fake_a)
    loss, parts = generator_loss(
        d_fake_b=D_b(fake_b), d_fake_a=D_a(fake_a), real_a=a, real_b=b,
        rec_a=rec_a, rec_b=rec_b, idt_a=idt_a, idt_b=idt_b, weights=weights,
    )
    return GeneratorPass(loss, parts, fake_a, fake_b, rec_b)


def discriminator_phase(
    D_a: nn.Module, D_b: nn.Module, pools: dict[str, ImagePool], micro: list[dict[str, Any]],
    fakes: list[tuple[torch.Tensor, torch.Tensor]], weights: CycleGANLossWeights, ctx: StepContext, optimizer: str,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The discriminator phase: per micro-batch, real vs pooled fake in one pass per discriminator, backward;
    then one step of ``optimizer``. ``fakes``: (fake_a, fake_b) detached, per micro-batch. Returns the detached
    (loss D_a, loss D_b) per micro-batch."""
    losses = []
    for mb, (fake_a, fake_b) in zip(micro, fakes):
        a, b = mb["source"], mb["target"]
        n = a.shape[0]
        fake_a, fake_b = pools["pool_a"].query(fake_a), pools["pool_b"].query(fake_b)
        with ctx.autocast():
            pa = D_a(torch.cat([a, fake_a]))
            pb = D_b(torch.cat([b, fake_b]))
            loss_da = discriminator_loss(pa[:n], pa[n:], weights)
            loss_db = discriminator_loss(pb[:n], pb[n:], weights)
        ctx.backward(loss_da + loss_db)
        losses.append((loss_da.detach(), loss_db.detach()))
    ctx.optimizer_step(optimizer)
    return losses


class CycleGAN(MethodBase):
    """The CycleGAN method: four networks, two Adam optimisers, two fake pools (docs/engine.md §1).

    ``image_size`` (H, W) is recorded in checkpoints for inference. Weights are initialised N(0, gain) from a
    generator seeded by ``cfg.train.seed`` (identical on every rank); the pools draw from a generator seeded by
    seed + 1000 + rank.
    """

    name = "cyclegan"

    def __init__(self, cfg: CycleGANConfig, device: torch.device, image_size: tuple[int, int], rank: int = 0,
                 anchors: tuple[Any, Any] = (None, None)) -> None:
        self.cfg = cfg
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if self.image_size[0] % 4 or self.image_size[1] % 4:
            raise SonoshiftError(f"CycleGAN needs image sides divisible by 4, got {self.image_size}.")
        m, t = cfg.model, cfg.train
        g = make_generator(t.seed)
        fmt = torch.channels_last if t.channels_last else torch.contiguous_format
        self.anchors = anchors
        self.modules: dict[str, nn.Module] = {
            "G_ab": init_normal(build_generator(m, anchors[0]), g, m.init_gain),
            "G_ba": init_normal(build_generator(m, anchors[1]), g, m.init_gain),
            "D_a": init_normal(PatchGAN(1, ndf=m.ndf, n_layers=m.d_layers), g, m.init_gain),
            "D_b": init_normal(PatchGAN(1, ndf=m.ndf, n_layers=m.d_layers), g, m.init_gain),
        }
        for mod in self.modules.values():
            if hasattr(mod, "zero_head"):  # anchored generators start as their histogram map
                mod.zero_head()
            mod.to(device=device, memory_format=fmt).train()
        self.net = {k: (torch.compile(v) if t.compile else v) for k, v in self.modules.items()}
        betas = (t.beta1, t.beta2)
        gen = itertools.chain(self.modules["G_ab"].parameters(), self.modules["G_ba"].parameters())
        dis = itertools.chain(self.modules["D_a"].parameters(), self.modules["D_b"].parameters())
        self.optimizers = {"G": torch.optim.Adam(gen, t.lr, betas), "D": torch.optim.Adam(dis, t.lr, betas)}
        self.ema = {k: EMA(self.modules[k], t.ema_decay) for k in ("G_ab", "G_ba")} if t.ema_decay > 0 else {}
        self.weights = CycleGANLossWeights(cfg.loss.cycle, cfg.loss.identity, cfg.loss.discriminator)
        self.pools = {
            "pool_a": ImagePool(cfg.loss.pool_size, make_generator(t.seed, 1000 + rank)),
            "pool_b": ImagePool(cfg.loss.pool_size, make_generator(t.seed, 2000 + rank)),
        }

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One generator update then one discriminator update; returns the mean losses of the step."""
        G_ab, G_ba, D_a, D_b = (self.net[k] for k in ("G_ab", "G_ba", "D_a", "D_b"))
        micro = ctx.micro_batches(batch)
        logs: dict[str, list[torch.Tensor]] = {}

        _requires_grad([self.modules["D_a"], self.modules["D_b"]], False)
        fakes = []
        for mb in micro:
            with ctx.autocast():
                g = generator_pass(G_ab, G_ba, D_a, D_b, mb["source"], mb["target"], self.weights)
            ctx.backward(g.loss)
            fakes.append((g.fake_a.detach(), g.fake_b.detach()))
            logs.setdefault("loss_G", []).append(g.loss.detach())
            for k, v in g.parts.items():
                logs.setdefault(k, []).append(v)
        ctx.optimizer_step("G")
        _requires_grad([self.modules["D_a"], self.modules["D_b"]], True)

        for loss_da, loss_db in discriminator_phase(D_a, D_b, self.pools, micro, fakes, self.weights, ctx, "D"):
            logs.setdefault("D_a", []).append(loss_da)
            logs.setdefault("D_b", []).append(loss_db)

        keys = list(logs)
        means = torch.stack([torch.stack(logs[k]).float().mean() for k in keys]).tolist()
        return dict(zip(keys, means))

    @torch.no_grad()
    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Rows for a TensorBoard grid: source, G_ab(source), target, G_ba(target) (B,1,H,W in [-1,1])."""
        G_ab, G_ba = self.modules["G_ab"], self.modules["G_ba"]
        G_ab.eval(), G_ba.eval()
        out = {
            "source": batch["source"], "source_to_target": G_ab(batch["source"]),
            "target": batch["target"], "target_to_source": G_ba(batch["target"]),
        }
        G_ab.train(), G_ba.train()
        return out

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The fake pools (images + generator states) for exact resume."""
        tensors: dict[str, torch.Tensor] = {}
        state: dict[str, Any] = {}
        for name, pool in self.pools.items():
            t, s = pool.state(name)
            tensors.update(t)
            state.update(s)
        return tensors, state

    def load_extra_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""
        device = next(self.modules["G_ab"].parameters()).device
        for name, pool in self.pools.items():
            pool.load_state(name, tensors, state, device)

    def metadata(self) -> dict[str, Any]:
        """Inference facts stored in checkpoints (next to the engine's dataset stamp): domains and image size."""
        return {
            "source_domain": self.cfg.data.source_domain,
            "target_domain": self.cfg.data.target_domain,
            "image_size": list(self.image_size),
            **({"anchor_ab": anchor_metadata(self.anchors[0]), "anchor_ba": anchor_metadata(self.anchors[1])}
               if self.anchors[0] is not None else {}),
        }


def build(cfg: CycleGANConfig, dataset: Any, device: torch.device, rank: int = 0) -> CycleGAN:
    """A CycleGAN for ``dataset`` (items with "source" (1,H,W)), on ``device`` (anchored generators: their
    anchors fitted on the dataset's frames, as the student's)."""
    from sonoshift.methods.student import fit_student_anchor

    first = dataset[0]["source"]
    anchors: tuple[Any, Any] = (None, None)
    if cfg.model.anchor != "none":
        src, tgt = cfg.data.source_domain, cfg.data.target_domain
        anchors = (fit_student_anchor(cfg.model.anchor, dataset, src, tgt),
                   fit_student_anchor(cfg.model.anchor, dataset, tgt, src))
    return CycleGAN(cfg, device, tuple(first.shape[-2:]), rank=rank, anchors=anchors)


class CycleGANTranslator(GeneratorTranslator):
    """One CycleGAN generator as a translator: (B,1,H,W) in [-1,1] -> same; follows the input's device."""

    method = "cyclegan"


def load_translator(
    ckpt: ModelCheckpoint, device: torch.device | None = None, *, reverse: bool = False, use_ema: bool = True
) -> CycleGANTranslator:
    """The source->target generator of a CycleGAN checkpoint (target->source with ``reverse``)."""
    cfg = from_dict(CycleGANConfig, ckpt.state.get("config", {}))
    meta = ckpt.state.get("metadata", {})
    size = tuple(meta.get("image_size", (256, 256)))
    src, tgt = meta.get("source_domain", cfg.data.source_domain), meta.get("target_domain", cfg.data.target_domain)
    hm = anchor_from_metadata(meta.get("anchor_ba" if reverse else "anchor_ab"), tgt if reverse else src,
                              src if reverse else tgt, size)
    net = load_module(ckpt, "G_ba" if reverse else "G_ab", build_generator(cfg.model, hm), prefer_ema=use_ema)
    if device is not None:
        net.to(device)
    return CycleGANTranslator(net, size, tgt if reverse else src, src if reverse else tgt)


def training_data(data: Path, cfg: CycleGANConfig) -> Any:
    """Unpaired source/target frames of ``cfg.data`` (items "source", "target")."""
    return unpaired_frames(data, cfg.data, cfg.train.seed)


SPEC = register(MethodSpec(
    name="cyclegan", kind="translator", config=CycleGANConfig, dataset=training_data, build=build,
    load=load_translator, summary="Train a CycleGAN (source <-> target); torchrun launches it data-parallel.",
    default_config="configs/cpu/cyclegan.yaml", study_order=0,
))


def train_cyclegan(
    data: str | Path,
    cfg: CycleGANConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    config_name: str | None = None,
) -> TrainResult:
    """Train a CycleGAN on the prepared dataset ``data`` into the run folder ``out`` (API of `sonoshift train
    cyclegan`, i.e. ``sonoshift.methods.train_method("cyclegan", ...)``). Returns the loop's TrainResult."""
    return train_method("cyclegan", data, out, cfg=cfg, resume=resume, progress=progress, config_name=config_name)


__all__ = [
    "CycleGAN", "CycleGANConfig", "CycleGANTranslator", "GeneratorPass", "build", "discriminator_phase",
    "generator_pass", "load_translator", "train_cyclegan",
]
