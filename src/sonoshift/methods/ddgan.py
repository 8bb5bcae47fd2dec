"""The conditional denoising diffusion GAN as an engine method (docs/engine.md §1) and its translator (§5).

Training (as in the source paper): a frozen, trained CycleGAN maps each target frame x_0 to a synthetic source
frame y_s = G_{T->S}(x_0); the generator learns p(x_0 | y_s) from (x_{t+1}, y_s, t, z). At inference the
condition is the real source frame. One step = a discriminator update (generator output detached, lazy R1 on
real pairs every ``loss.lazy_reg`` steps) then a generator update (non-saturating loss). Adam (0.5, 0.9) with
separate generator and discriminator learning rates, cosine decay, EMA of the generator (``train.ema_decay``).

The cascade (``sonoshift.methods.cascade``) reuses this class with another condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from torch import nn

from sonoshift.config import NonNegFloat, PosFloat, PosInt, Range, UnitFloat, Validated, from_dict
from sonoshift.data.translation import TranslationData
from sonoshift.diffusion.sampler import sample, sample_with_uncertainty
from sonoshift.diffusion.schedule import (
    Schedule,
    ScheduleConfig,
    describe,
    schedule_from_config,
)
from sonoshift.engine.checkpoint import ModelCheckpoint, load_module, read_model
from sonoshift.engine.ema import EMA
from sonoshift.engine.loop import EngineConfig, MethodBase, StepContext, TrainResult
from sonoshift.engine.schedules import lr_factor
from sonoshift.errors import SonoshiftError
from sonoshift.methods import MethodSpec, register, train_method
from sonoshift.methods.cyclegan import CycleGANConfig, build_generator
from sonoshift.methods.anchor import (
    Anchor,
    anchor_from_metadata,
    anchor_metadata,
    anchored_condition,
    apply_as_gain,
    fit_affine_dataset,
    fit_anchor,
    keep_moments,
    keeps_moments,
)
from sonoshift.methods.kinds import TranslatorBase
from sonoshift.methods.output_gamma import GAMMAS, apply_gamma, load_critic
from sonoshift.models.ddgan_disc import DDGANDiscriminator, DiscConfig
from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig
from sonoshift.objectives.ddgan import discriminator_loss, generator_loss
from sonoshift.seeding import make_generator


@dataclass(frozen=True)
class DDGANLoss(Validated):
    """R1 weight gamma on real pairs, applied every ``lazy_reg`` steps (0 disables R1); ``l1_x0``: weight of
    SynDiff's L1 term between the predicted x_0 and x_0 in the generator loss (SynDiff uses 0.5; 0 = the DDGAN's
    adversarial-only loss); ``structure``: weight of the content anchor 1 - LNCC(predicted x_0, anchor image)
    (9x9 windows; the anchor is the residual's base, the first condition channel): it keeps the source's local
    structure while leaving local grey levels free (0 = off)."""

    r1_gamma: NonNegFloat = 0.02
    lazy_reg: PosInt = 10
    l1_x0: NonNegFloat = 0.0
    structure: NonNegFloat = 0.0


@dataclass(frozen=True)
class DDGANOptim(Validated):
    """Adam for the generator and the discriminator, with their own learning rates (``train.lr`` and
    ``train.beta1/2`` are not used by this method). ``lr_schedule``: "cosine" decays both rates from their base to
    ``lr_min_ratio`` x base over the run, starting after the fraction ``decay_start`` of it (0 = from the first
    step; 0.5 keeps the full rate until mid-run); "constant_then_linear" follows ``train.decay_epochs``."""

    lr_g: PosFloat = 1.6e-4
    lr_d: PosFloat = 1.25e-4
    beta1: Annotated[float, Range(0, 1, hi_open=True)] = 0.5
    beta2: Annotated[float, Range(0, 1, hi_open=True)] = 0.9
    lr_schedule: Literal["cosine", "constant_then_linear"] = "cosine"
    lr_min_ratio: UnitFloat = 0.0
    decay_start: UnitFloat = 0.0


@dataclass(frozen=True)
class DDGANConfig(Validated):
    """The full DDGAN run configuration (YAML: configs/cpu/ddgan.yaml, configs/paper/diffusion_*.yaml).

    cyclegan: the trained CycleGAN checkpoint (run folder, checkpoint folder or model.safetensors) whose
    target -> source generator makes the training condition y_s = G_{T->S}(x_0); it stays frozen.
    condition_noise: std ([-1, 1] units) of Gaussian noise added to y_s in training (0 = none), so the generator
    cannot rely on the low-amplitude detail in which a CycleGAN hides its inverse, and learns from what a real
    source frame also shows (the cascade's counterpart is ``round_trip_noise``).
    anchor: the residual generator's base image. "condition": the condition itself (DDGAN: the source frame;
    cascade: the CycleGAN output). "histogram_match": the source frame histogram-matched to the target training
    frames (``sonoshift.methods.anchor``), so an untrained translator equals the histogram-matching baseline; the
    cascade then sees the CycleGAN output as a second condition channel (``generator.in_channels: 3``).
    "affine": the same with a global linear grey map that gives the real source training frames' foreground
    mean and std those of the target training frames (keeps local structure exactly; see ``methods.anchor``);
    "depth_affine": one such map per image row (depth), for scanners that differ in time-gain compensation.
    anchor_despeckle: with an affine anchor, also smooth the source inside the fan by a Gaussian whose width is
    fitted on the training split so that the anchor's speckle is as fine as the target's
    (``methods.anchor.fit_despeckle``; unpaired). anchor_despeckle_kind: "gaussian" (that blur of the source) or
    "bilateral" (an edge-preserving bilateral filter of the mapped levels, its range sigma fitted the same way).
    anchor_guard: with an affine anchor, keep the identity map (no grey map, no despeckle) when the two domains'
    training frames differ in pooled grey levels no more than two halves of one domain's patients do
    (``methods.anchor_guard``; training split only): a map fitted to sampling noise moves frames away from the
    target (docs/diffusion.md sections 21-22). The translator then also keeps each frame's grey-level mean and
    spread (``methods.anchor.keep_moments``, last). The reading is stored in the checkpoint's anchor metadata.
    output_gain: at sampling only, re-apply the sampled image to the generator's base image (the anchor, first
    condition channel) as a smooth local gain, base x blur(sample) / blur(base), Gaussian of this std in pixels
    inside the fan (``methods.anchor.apply_as_gain``; 0 = off): the learned brightness change, applied the way
    ultrasound speckle scales, without the additive correction's full-contrast speckle over a darkened floor.
    select_floor: after training, use the last kept checkpoint whose outputs on the validation source frames keep
    a mean LNCC of at least this with their anchor image, the first one when none does (0 = the last checkpoint;
    ``methods.select``: no ground truth is read). Keep several checkpoints (``train.checkpoint_every``,
    ``train.keep_last``) for it to choose from. select_max_brightening: with select_floor, a checkpoint whose
    validation outputs are on average brighter than their anchor by more than this many grey levels (of 0..255) is
    not used either (the moment-matched anchor already has the target's mean; 255 = no limit).
    task_critic: a target-domain segmenter (`sonoshift segment train`; another instance of the task model, not the
    one that judges the run): after training, the output gamma among ``task_gammas`` under which it is surest of
    the validation source frames (lowest mean softmax entropy; no label read) is stored in the checkpoint and
    applied to every output (``methods.output_gamma``; "" = none, outputs as trained).
    """

    name: str = "ddgan"
    data: TranslationData = field(default_factory=TranslationData)
    cyclegan: str = ""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    generator: UNetConfig = field(default_factory=UNetConfig)
    discriminator: DiscConfig = field(default_factory=DiscConfig)
    loss: DDGANLoss = field(default_factory=DDGANLoss)
    optim: DDGANOptim = field(default_factory=DDGANOptim)
    train: EngineConfig = field(default_factory=lambda: EngineConfig(ema_decay=0.999))
    condition_noise: NonNegFloat = 0.0
    anchor: Literal["condition", "histogram_match", "affine", "depth_affine"] = "condition"
    anchor_despeckle: bool = False
    anchor_despeckle_kind: Literal["gaussian", "bilateral"] = "gaussian"
    anchor_guard: bool = True
    output_gain: Annotated[float, Range(0, 32)] = 0.0
    select_floor: Annotated[float, Range(0, 1)] = 0.0
    select_max_brightening: Annotated[float, Range(0, 255)] = 255.0
    task_critic: str = ""
    task_gammas: tuple[PosFloat, ...] = GAMMAS


@dataclass
class FrozenCycleGAN:
    """The two generators of a trained CycleGAN (eval mode, no grad) plus what rebuilds them."""

    G_ab: nn.Module
    G_ba: nn.Module
    config: CycleGANConfig
    metadata: dict[str, Any]
    path: str


def load_cyclegan(path: str | Path, device: torch.device) -> FrozenCycleGAN:
    """Both generators of the CycleGAN checkpoint at ``path`` (EMA weights when present), frozen, on ``device``."""
    if not str(path):
        raise SonoshiftError(
            "config key 'cyclegan' is empty: give the trained CycleGAN checkpoint that makes the condition."
        )
    ckpt = read_model(path, expected="a CycleGAN (from `sonoshift train cyclegan`)")
    if ckpt.method != "cyclegan":
        raise SonoshiftError(f"checkpoint {ckpt.path} is a '{ckpt.method}' model, not a CycleGAN.")
    cfg = from_dict(CycleGANConfig, ckpt.state.get("config", {}))
    nets = [load_module(ckpt, k, build_generator(cfg.model)) for k in ("G_ab", "G_ba")]
    for n in nets:
        n.to(device).eval().requires_grad_(False)
    return FrozenCycleGAN(nets[0], nets[1], cfg, dict(ckpt.state.get("metadata", {})), str(ckpt.path))


def check_domains(cg: FrozenCycleGAN, data: TranslationData) -> None:
    """The CycleGAN must translate between the same two domains as the diffusion run."""
    src = cg.metadata.get("source_domain", cg.config.data.source_domain)
    tgt = cg.metadata.get("target_domain", cg.config.data.target_domain)
    if (src, tgt) != (data.source_domain, data.target_domain):
        raise SonoshiftError(
            f"CycleGAN checkpoint {cg.path} translates {src} -> {tgt}, but this run is "
            f"{data.source_domain} -> {data.target_domain}."
        )


def _seeded_init(seed: int, build: Any) -> nn.Module:
    """Build a module with PyTorch's default initialisation drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class DDGAN(MethodBase):
    """Conditional DDGAN: generator ``G`` (U-Net), discriminator ``D``, optimisers "G" and "D", EMA of G.

    ``image_size`` (H, W) is recorded in checkpoints. Networks are initialised from ``cfg.train.seed``
    (identical on every rank); the step's randomness (t, pairs, z, posterior noise) comes from a generator on
    the training device seeded by seed + 3000 + rank, saved in checkpoints for exact resume. ``hm``: the fitted
    histogram anchor, required when ``cfg.anchor`` is "histogram_match" (``build`` fits it on the dataset).
    """

    name = "ddgan"
    condition_kind = "synthetic_source"  # y_s = G_{T->S}(x_0)

    def __init__(
        self, cfg: DDGANConfig, device: torch.device, image_size: tuple[int, int], cyclegan: FrozenCycleGAN,
        rank: int = 0, hm: Anchor | None = None,
    ) -> None:
        self.cfg = cfg
        if (cfg.anchor != "condition") != (hm is not None):
            raise SonoshiftError(f"anchor '{cfg.anchor}' needs {'a' if hm is None else 'no'} fitted anchor map.")
        self.hm = hm
        need = 1 + self.condition_channels()
        if cfg.generator.in_channels != need:
            raise SonoshiftError(
                f"generator.in_channels must be {need} for a {self.name} with anchor '{cfg.anchor}' (x_t and "
                f"{need - 1} condition channel(s)), got {cfg.generator.in_channels}."
            )
        if cfg.discriminator.see_condition and need != 2:
            raise SonoshiftError("discriminator.see_condition needs a one-channel condition; "
                                 f"anchor '{cfg.anchor}' gives {need - 1}.")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.schedule: Schedule = schedule_from_config(cfg.schedule)
        self.cyclegan = cyclegan
        check_domains(cyclegan, cfg.data)
        t, o = cfg.train, cfg.optim
        G = _seeded_init(t.seed, lambda: DDGANUNet(cfg.generator, image_size=self.image_size[0]))
        D = _seeded_init(t.seed + 1, lambda: DDGANDiscriminator(cfg.discriminator))
        self.modules: dict[str, nn.Module] = {"G": G.to(device).train(), "D": D.to(device).train()}
        self.net = {k: (torch.compile(v) if t.compile else v) for k, v in self.modules.items()}
        self.optimizers = {
            "G": torch.optim.Adam(G.parameters(), o.lr_g, betas=(o.beta1, o.beta2)),
            "D": torch.optim.Adam(D.parameters(), o.lr_d, betas=(o.beta1, o.beta2)),
        }
        self.ema = {"G": EMA(G, t.ema_decay, warmup=t.ema_warmup)} if t.ema_decay > 0 else {}
        self.gen = make_generator(t.seed, 3000 + rank, device=device)

    # -- the condition ------------------------------------------------------------------------------------
    def condition_channels(self) -> int:
        """Channels of the condition: 1 (the source, or its histogram-matched version)."""
        return 1

    def condition(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training condition for clean targets ``x0``: the synthetic source G_{T->S}(x0) (histogram-matched
        with ``anchor: histogram_match``), no grad. (``generator``: the noise of ``condition_noise``, default the
        step generator.)"""
        with torch.no_grad():
            y_s = self.cyclegan.G_ba(x0)
            sigma = self.cfg.condition_noise
            if sigma > 0:
                g = self.gen if generator is None else generator
                noise = torch.randn(y_s.shape, generator=g, device=y_s.device, dtype=y_s.dtype)
                y_s = (y_s + sigma * noise).clamp(-1.0, 1.0)
            return anchored_condition(self.hm, y_s, None)

    # -- one step -----------------------------------------------------------------------------------------
    def _r1_gamma(self, step: int) -> float:
        lz = self.cfg.loss
        return lz.r1_gamma if lz.r1_gamma > 0 and lz.lazy_reg > 0 and step % lz.lazy_reg == 0 else 0.0

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One discriminator update, then one generator update; returns the mean losses of the step."""
        G, D = self.net["G"], self.net["D"]
        micro = ctx.micro_batches(batch)
        conds = [self.condition(mb["target"]) for mb in micro]
        logs: dict[str, list[float]] = {}
        gamma = self._r1_gamma(ctx.step)
        for mb, cond in zip(micro, conds):
            with ctx.autocast():
                loss_d, parts = discriminator_loss(G, D, self.schedule, mb["target"], cond, self.gen, gamma)
            ctx.backward(loss_d)
            for k, v in {"loss_D": loss_d.item(), **parts}.items():
                logs.setdefault(k, []).append(v)
        ctx.optimizer_step("D")
        self.modules["D"].requires_grad_(False)
        try:
            for mb, cond in zip(micro, conds):
                with ctx.autocast():
                    loss_g, p = generator_loss(
                        G, D, self.schedule, mb["target"], cond, self.gen, l1_weight=self.cfg.loss.l1_x0,
                        structure_weight=self.cfg.loss.structure,
                    )
                ctx.backward(loss_g)
                logs.setdefault("loss_G", []).append(loss_g.item())
                logs.setdefault("l1_x0", []).append(p["l1"].item())
                if "structure" in p:
                    logs.setdefault("structure", []).append(p["structure"].item())
        finally:
            self.modules["D"].requires_grad_(True)
        ctx.optimizer_step("G")
        return {k: sum(v) / len(v) for k, v in logs.items()}

    def lr_factors(self, step: int, total_steps: int) -> dict[str, float]:
        """Cosine decay of both learning rates (or CycleGAN-style constant-then-linear, see ``DDGANOptim``)."""
        o, t = self.cfg.optim, self.cfg.train
        f = lr_factor(o.lr_schedule, step, total_steps, epochs=t.epochs, decay_epochs=t.decay_epochs,
                      min_ratio=o.lr_min_ratio, decay_start=o.decay_start)
        return {"G": f, "D": f}

    # -- inference pieces ---------------------------------------------------------------------------------
    def sampling_generator(self) -> nn.Module:
        """The generator used for sampling: the EMA copy when kept, else the online network."""
        return self.ema["G"].module if "G" in self.ema else self.modules["G"]

    @torch.no_grad()
    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """TensorBoard rows: target, its training condition, one sample from that condition (B,1,H,W, [-1,1])."""
        x0 = batch["target"]
        g = make_generator(0, device=x0.device)
        cond = self.condition(x0, g)
        x_init = self.partial_init(cond) if self.cfg.schedule.start == "partial" else None
        G = self.sampling_generator()
        was_training = G.training
        G.eval()
        out = sample(G, self.schedule, cond, g, x_init)
        G.train(was_training)
        return {"target": x0, "condition": cond, "sample": out}

    def partial_init(self, cond: torch.Tensor) -> torch.Tensor:
        """The image the partial-noising start noises: the residual's base, the first condition channel."""
        return cond[:, :1]

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The step generator's state, for exact resume."""
        return {"gen": self.gen.get_state()}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""
        self.gen.set_state(tensors["gen"].to("cpu", torch.uint8))

    def metadata(self) -> dict[str, Any]:
        """Inference facts stored in checkpoints: domains, image size, schedule, condition, CycleGAN used."""
        return {
            "source_domain": self.cfg.data.source_domain,
            "target_domain": self.cfg.data.target_domain,
            "image_size": list(self.image_size),
            "schedule": describe(self.cfg.schedule),
            "condition": self.condition_kind,
            "cyclegan": self.cyclegan.path,
            "anchor": anchor_metadata(self.hm),
        }


class TargetFrames(torch.utils.data.Dataset):
    """The target-domain frames of a split, each once per epoch: items {"target": float32 (1, H, W) in [-1, 1]}."""

    def __init__(self, root: str | Path, data: TranslationData, seed: int = 0) -> None:
        from sonoshift.data.datasets import UnpairedDataset

        # An unpaired dataset from the target domain to itself iterates over every target frame in order.
        self.root = Path(root)  # the affine anchors read their statistics from the prepared folder
        tgt = data.target_domain
        self.frames = UnpairedDataset(root, data.split, tgt, tgt, seed=seed, size=data.size)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"target": self.frames[i]["source"]}


def build(cfg: DDGANConfig, dataset: Any, device: torch.device, rank: int = 0) -> DDGAN:
    """A DDGAN for ``dataset`` (items with "target" (1,H,W)) on ``device``; loads the frozen CycleGAN."""
    if cfg.task_critic:
        load_critic(cfg.task_critic, cfg.data.target_domain)  # a wrong critic stops here, not after training
    size = tuple(dataset[0]["target"].shape[-2:])
    return DDGAN(cfg, device, size, load_cyclegan(cfg.cyclegan, device), rank=rank, hm=fitted_anchor(cfg, dataset))


def fitted_anchor(cfg: DDGANConfig, dataset: Any) -> Anchor | None:
    """The anchor fitted on ``dataset``'s target frames (histogram matching), or on the source and target frames
    and field-of-view masks of its prepared folder's split (affine anchors), or None for ``anchor: condition``."""
    if cfg.anchor == "condition":
        return None
    if cfg.anchor in ("affine", "depth_affine"):
        return fit_affine_dataset(dataset, cfg.data.split, cfg.data.source_domain, cfg.data.target_domain,
                                  depth=cfg.anchor == "depth_affine", despeckle=cfg.anchor_despeckle,
                                  despeckle_kind=cfg.anchor_despeckle_kind, guard=cfg.anchor_guard)
    return fit_anchor(dataset, cfg.data.source_domain, cfg.data.target_domain)


class DDGANTranslator(TranslatorBase):
    """A trained DDGAN as a translator: source (B,1,H,W) in [-1,1] -> one sample in [-1,1], same device.

    ``prepare(x)`` makes (condition, partial-start image) from the source frame: the source itself for the plain
    DDGAN; the cascade passes it through the CycleGAN first (``pre``). With a histogram ``anchor`` the condition
    starts with the histogram-matched source (``sonoshift.methods.anchor.anchored_condition``). Randomness only from ``generator``; without one,
    from the translator's own generator, seeded 0 when the translator is made and continued from call to call
    (so successive batches get fresh noise, and the same sequence of calls gives the same outputs).
    ``uncertainty(x, k, generator)`` returns the mean of K samples and the per-pixel std (uncertainty map).
    """

    method = "ddgan"
    stochastic = True

    def __init__(
        self, G: nn.Module, schedule: Schedule, start: str, image_size: tuple[int, int], source: str, target: str,
        pre: nn.Module | None = None, anchor: Anchor | None = None, output_gain: float = 0.0,
        output_gamma: float = 1.0,
    ) -> None:
        self.G = G.eval().requires_grad_(False)
        self.output_gain = float(output_gain)
        self.output_gamma = float(output_gamma)
        self.anchor = anchor
        self.pre = None if pre is None else pre.eval().requires_grad_(False)
        self.schedule, self.start = schedule, start
        self.image_size = image_size
        self.source_domain, self.target_domain = source, target
        self._default_gen: torch.Generator | None = None

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"translator input must be (B,1,H,W), got {tuple(x.shape)}.")
        for net in (self.G, self.pre):
            if net is not None and next(net.parameters()).device != x.device:
                net.to(x.device)
        with torch.no_grad():
            base = None if self.pre is None else self.pre(x).clamp(-1, 1)
            cond = anchored_condition(self.anchor, x, base)
        return cond, (cond[:, :1] if self.start == "partial" else None)

    def _gen(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        if self._default_gen is None or self._default_gen.device != x.device:
            self._default_gen = make_generator(0, device=x.device)
        return self._default_gen

    @property
    def keep_moments(self) -> bool:
        """Whether the output keeps its base image's per-image moments (the anchor guard made the anchor the
        identity: ``methods.anchor.keep_moments``)."""
        return keeps_moments(self.anchor)

    def _post(self, cond: torch.Tensor):
        """The sample's last steps: ``apply_as_gain`` on the base image when ``output_gain`` > 0, then the
        ``output_gamma`` chosen after training (``methods.output_gamma``; 1 = none), then, when the anchor guard
        made the anchor the identity, the base image's moments (``keep_moments``); None when none applies."""
        gain, gamma, keep = self.output_gain, self.output_gamma, self.keep_moments
        if gain <= 0 and gamma == 1.0 and not keep:
            return None

        def post(y: torch.Tensor) -> torch.Tensor:
            y = apply_gamma(apply_as_gain(y, cond[:, :1], gain) if gain > 0 else y, gamma)
            return keep_moments(y, cond[:, :1]) if keep else y

        return post

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """The residual generator's base image for source ``x`` (the anchor; the condition without an anchor)."""
        return self._prepare(x)[0][:, :1]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        cond, x_init = self._prepare(x)
        return sample(self.G, self.schedule, cond, self._gen(x, generator), x_init, post=self._post(cond))

    def uncertainty(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K samples per frame -> (mean in [-1, 1], per-pixel std in [-1, 1] units), both (B, 1, H, W)."""
        cond, x_init = self._prepare(x)
        return sample_with_uncertainty(self.G, self.schedule, cond, k, self._gen(x, generator), x_init,
                                       post=self._post(cond))


def rebuild_generator(
    ckpt: ModelCheckpoint, gen_cfg: UNetConfig, use_ema: bool = True
) -> tuple[nn.Module, tuple[int, int]]:
    """The trained DDGAN generator of ``ckpt`` and the image size it was trained at."""
    size = tuple(int(v) for v in ckpt.state.get("metadata", {}).get("image_size", (256, 256)))
    G = load_module(ckpt, "G", DDGANUNet(gen_cfg, image_size=size[0]), prefer_ema=use_ema)
    return G, size  # type: ignore[return-value]


def load_translator(
    ckpt: ModelCheckpoint, device: torch.device | None = None, *, use_ema: bool = True
) -> DDGANTranslator:
    """The DDGAN translator of a checkpoint: condition = the real source frame."""
    cfg = from_dict(DDGANConfig, ckpt.state.get("config", {}))
    G, size = rebuild_generator(ckpt, cfg.generator, use_ema)
    if device is not None:
        G.to(device)
    meta = ckpt.state.get("metadata", {})
    src, tgt = meta.get("source_domain", cfg.data.source_domain), meta.get("target_domain", cfg.data.target_domain)
    return DDGANTranslator(
        G, schedule_from_config(cfg.schedule), cfg.schedule.start, size, src, tgt,
        anchor=anchor_from_metadata(meta.get("anchor"), src, tgt, size), output_gain=cfg.output_gain,
        output_gamma=float(meta.get("output_gamma", 1.0)),
    )


def training_data(data: Path, cfg: DDGANConfig) -> TargetFrames:
    """The target frames of ``cfg.data`` (items "target"); the condition is made from each one in the step."""
    return TargetFrames(data, cfg.data, seed=cfg.train.seed)


def select(cfg: DDGANConfig, data: Path, run: Path) -> Path | None:
    """After a completed run: the checkpoint chosen by ``cfg.select_floor`` (``methods.select``; None when off),
    then, with ``cfg.task_critic``, the output gamma of that checkpoint (``methods.output_gamma``)."""
    chosen = None
    if cfg.select_floor > 0:
        from sonoshift.methods.select import select_checkpoint

        chosen = select_checkpoint(run, data, cfg.data.source_domain, cfg.select_floor,
                                   max_brightening=cfg.select_max_brightening)
    if cfg.task_critic:
        from sonoshift.methods.output_gamma import tune_output_gamma

        tune_output_gamma(run, data, cfg.data.source_domain, cfg.task_critic, cfg.task_gammas)
    return chosen


SPEC = register(MethodSpec(
    name="ddgan", kind="translator", config=DDGANConfig, dataset=training_data, build=build, load=load_translator,
    select=select,
    summary="Train a conditional denoising diffusion GAN; its condition is made by a frozen, trained CycleGAN.",
    default_config="configs/cpu/ddgan.yaml", needs={"cyclegan": "cyclegan"}, study_order=1,
))


def train_ddgan(
    data: str | Path, cfg: DDGANConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train a conditional DDGAN on the prepared dataset ``data`` into the run folder ``out`` (API of
    `sonoshift train ddgan`, i.e. ``sonoshift.methods.train_method("ddgan", ...)``)."""
    return train_method("ddgan", data, out, cfg=cfg, resume=resume, progress=progress)


__all__ = [
    "DDGAN", "DDGANConfig", "DDGANTranslator", "TargetFrames", "build", "load_cyclegan", "load_translator", "select",
    "train_ddgan",
]
