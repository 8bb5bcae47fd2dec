"""A compact student distilled from any trained translator (engine method "student" and its translator).

Training (``sonoshift distill TEACHER -o STUDENT``): the teacher (CycleGAN, DDGAN, cascade, another student)
translates every source-domain training frame once, before the first step (stochastic teachers: one seeded
sample, or the mean of ``data.teacher_samples`` samples); the student learns

    loss_G = distill * L1(S(x), T(x)) + adversarial * LSGAN(D_b(S(x)), real)
    loss_D = discriminator * (LSGAN(D_b(y), real) + LSGAN(D_b(S(x)), fake))     y: an unpaired target frame

so it reproduces the teacher on the source distribution while a PatchGAN against real target frames keeps its
outputs on the target domain where it cannot match the teacher exactly. The student network is a small ResNet
generator (``model.arch: resnet``, the CycleGAN generator with fewer channels and blocks) or a mobile U-Net
(``mobile_unet``); `bench/realtime.py` measures both in ONNX Runtime at 256x256, batch 1, 2 threads.
The checkpoint is self-contained: the translator needs no teacher file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.config import NonNegFloat, NonNegInt, PosFloat, PosInt, Validated, from_dict, to_dict
from sonoshift.engine.checkpoint import ModelCheckpoint, load_module
from sonoshift.engine.ema import EMA
from sonoshift.engine.loop import EngineConfig, MethodBase, StepContext, TrainResult
from sonoshift.errors import SonoshiftError
from sonoshift.methods import MethodSpec, register, train_method
from sonoshift.methods.anchor import AffineMatch, anchor_from_metadata, anchor_metadata, fit_affine_dataset, fit_anchor
from sonoshift.methods.kinds import GeneratorTranslator
from sonoshift.models import PatchGAN, ResnetGenerator, init_normal
from sonoshift.objectives.cyclegan import lsgan
from sonoshift.outputs import settings_key
from sonoshift.seeding import make_generator


@dataclass(frozen=True)
class StudentModel(Validated):
    """The student generator and its discriminator. arch "mobile_unet" (default): MobileUNet(ch, n_blocks);
    "resnet": ResnetGenerator(ngf=ch, n_blocks, upsample). PatchGAN width ``ndf``, ``d_layers`` stride-2 layers.

    Why the mobile U-Net: in ONNX Runtime at batch 1 on 2 threads it ran 2.7x faster than the small ResNet
    generator (ch 16, 4 blocks) side by side (bench/realtime.py, 64 and 128 px), and distilled from the same
    teacher it matched the teacher's GT PSNR better (docs/deploy.md §5).

    ``anchor`` (mobile U-Net only): the student is ``models.anchored.AnchoredGenerator``, a fixed grey map of the
    source frame to the target domain plus a correction from a mobile U-Net with a zero-initialized head, so an
    untrained student already equals that map. The anchors of the diffusion teachers (``methods/anchor.py``):
    ``histogram_match`` (pooled over the training target frames) or ``depth_affine`` (one linear grey map per
    image row, fitted on both domains' training frames and field-of-view masks of the prepared split); stored in
    the checkpoint and part of the ONNX graph."""

    arch: Literal["resnet", "mobile_unet"] = "mobile_unet"
    anchor: Literal["none", "histogram_match", "depth_affine"] = "none"
    ch: PosInt = 16
    n_blocks: PosInt = 4
    upsample: Literal["transpose", "resize"] = "resize"
    ndf: PosInt = 16
    d_layers: PosInt = 3
    init_gain: PosFloat = 0.02


@dataclass(frozen=True)
class StudentLoss(Validated):
    """Weights: L1 to the teacher, LSGAN of the student against target frames, and the discriminator's loss.
    adversarial 0.1: at 1.0 the GAN term (as large as the L1 term once the student fits) pulled the student off its
    teacher by 0.7 dB GT PSNR and 0.07 Dice (docs/deploy.md section 5)."""

    distill: NonNegFloat = 10.0
    adversarial: NonNegFloat = 0.1
    discriminator: NonNegFloat = 0.5


@dataclass(frozen=True)
class StudentData(Validated):
    """Which frames: the teacher's domains, ``split``, ``size`` (None: prepared size); teacher_samples K: a
    stochastic teacher's target is the mean of K samples (1: one sample); teacher_batch: frames per teacher pass;
    targets_file: where the teacher's translations are kept (a .npy, with a .json sidecar naming the teacher
    checkpoint, frames and settings): reused by a run with the same teacher, frames and settings (a resumed run,
    an ablation of the student's losses), recomputed otherwise; "" = computed in memory, not kept.
    teacher_seed: seeds a stochastic teacher's samples (None: ``train.seed``); fixed, students of several
    training seeds learn from the same targets (and reuse one ``targets_file``)."""

    split: str = "train"
    size: PosInt | None = None
    teacher_samples: PosInt = 1
    teacher_batch: PosInt = 8
    targets_file: str = ""
    teacher_seed: NonNegInt | None = None


@dataclass(frozen=True)
class StudentConfig(Validated):
    """The distillation run (YAML: configs/cpu/student.yaml). ``teacher``: the trained translator to distil."""

    name: str = "student"
    teacher: str = ""
    data: StudentData = field(default_factory=StudentData)
    model: StudentModel = field(default_factory=StudentModel)
    loss: StudentLoss = field(default_factory=StudentLoss)
    train: EngineConfig = field(default_factory=EngineConfig)


def build_student(m: StudentModel, hm: Any = None) -> nn.Module:
    """The student generator for ``m`` (not yet initialised); ``hm``: the fitted anchor an anchored student needs
    (``HistogramMatch`` for ``m.anchor == "histogram_match"``, ``AffineMatch`` for "depth_affine")."""
    if m.anchor != "none":
        if m.arch != "mobile_unet":
            raise SonoshiftError(f"the {m.anchor} anchor is built for the mobile U-Net student, not arch '{m.arch}'.")
        if hm is None:
            raise SonoshiftError(f"an anchored student needs its fitted {m.anchor} map (none was given).")
        kind = hm.kind if isinstance(hm, AffineMatch) else "histogram_match"
        if kind != m.anchor:
            raise SonoshiftError(f"the student's anchor is {m.anchor}, but the map given is {kind}.")
        from sonoshift.models.anchored import anchored_mobile_unet

        return anchored_mobile_unet(hm, m.ch, m.n_blocks)
    if m.arch == "resnet":
        return ResnetGenerator(1, 1, ngf=m.ch, n_blocks=m.n_blocks, upsample=m.upsample)
    if m.arch == "mobile_unet":
        from sonoshift.models.mobile_unet import MobileUNet

        return MobileUNet(m.ch, m.n_blocks)
    raise SonoshiftError(f"unknown student arch '{m.arch}'; choose resnet or mobile_unet.")


class DistillFrames(torch.utils.data.Dataset):
    """Source frames with their teacher translation and an unpaired target frame: items {"source", "teacher",
    "target": float32 (1, H, W) in [-1, 1]} (``teacher``: uint8 (N, H, W) aligned with the source frames)."""

    def __init__(self, frames: Any, teacher: np.ndarray) -> None:
        if len(teacher) != frames.n_source:
            raise SonoshiftError(f"teacher targets ({len(teacher)}) do not match the source frames ({frames.n_source}).")
        self.frames, self.teacher = frames, teacher
        self.teacher_info: dict[str, Any] = {}  # what the checkpoint records about the teacher

    @property
    def split_record(self) -> dict[str, Any] | None:
        """The training-split record of the frames (the engine stores it in every checkpoint for leakage checks)."""
        return getattr(self.frames, "split_record", None)

    def set_epoch(self, epoch: int) -> None:
        self.frames.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.frames[i]
        t = torch.from_numpy(np.array(self.teacher[item["source_index"]], dtype=np.float32)) / 127.5 - 1.0
        t = t[None]
        if t.shape[-2:] != item["source"].shape[-2:]:
            t = F.interpolate(t[None], size=item["source"].shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)[0]
        return {"source": item["source"], "target": item["target"], "teacher": t}


class Student(MethodBase):
    """The distillation method: generator ``G`` (the student), discriminator ``D`` (target domain), optimisers
    "G" and "D" (Adam), optional EMA of G. ``image_size`` and the domains are recorded in checkpoints."""

    name = "student"

    def __init__(self, cfg: StudentConfig, device: torch.device, image_size: tuple[int, int], source: str,
                 target: str, hm: Any = None) -> None:
        self.cfg = cfg
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if self.image_size[0] % 4 or self.image_size[1] % 4:
            raise SonoshiftError(f"the student needs image sides divisible by 4, got {self.image_size}.")
        self.source_domain, self.target_domain = source, target
        m, t = cfg.model, cfg.train
        g = make_generator(t.seed)
        self.hm = hm
        G = init_normal(build_student(m, hm), g, m.init_gain)
        if hasattr(G, "zero_head"):  # anchored: starts as its anchor's grey map of the frame
            G.zero_head()
        self.modules: dict[str, nn.Module] = {
            "G": G.to(device).train(),
            "D": init_normal(PatchGAN(1, ndf=m.ndf, n_layers=m.d_layers), g, m.init_gain).to(device).train(),
        }
        betas = (t.beta1, t.beta2)
        self.optimizers = {k: torch.optim.Adam(v.parameters(), t.lr, betas) for k, v in self.modules.items()}
        self.ema = {"G": EMA(self.modules["G"], t.ema_decay)} if t.ema_decay > 0 else {}
        self.teacher_info: dict[str, Any] = {}

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One student update (distillation + adversarial), then one discriminator update."""
        G, D = self.modules["G"], self.modules["D"]
        w = self.cfg.loss
        micro = ctx.micro_batches(batch)
        logs: dict[str, list[float]] = {}
        fakes = []
        D.requires_grad_(False)
        try:
            for mb in micro:
                with ctx.autocast():
                    fake = G(mb["source"])
                    l1 = (fake - mb["teacher"]).abs().mean()
                    adv = lsgan(D(fake), True)
                    loss = w.distill * l1 + w.adversarial * adv
                ctx.backward(loss)
                fakes.append(fake.detach())
                for k, v in (("loss_G", loss), ("distill_l1", l1), ("G_adv", adv)):
                    logs.setdefault(k, []).append(v.item())
        finally:
            D.requires_grad_(True)
        ctx.optimizer_step("G")
        for mb, fake in zip(micro, fakes):
            with ctx.autocast():
                n = fake.shape[0]
                p = D(torch.cat([mb["target"], fake]))
                loss_d = w.discriminator * (lsgan(p[:n], True) + lsgan(p[n:], False))
            ctx.backward(loss_d)
            logs.setdefault("loss_D", []).append(loss_d.item())
        ctx.optimizer_step("D")
        return {k: sum(v) / len(v) for k, v in logs.items()}

    @torch.no_grad()
    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """TensorBoard rows: source, teacher translation, student translation (B, 1, H, W) in [-1, 1]."""
        G = self.modules["G"]
        G.eval()
        out = {"source": batch["source"], "teacher": batch["teacher"], "student": G(batch["source"])}
        G.train()
        return out

    def metadata(self) -> dict[str, Any]:
        """Inference facts (the engine adds the dataset stamp): domains, image size, architecture, teacher."""
        return {
            "source_domain": self.source_domain,
            "target_domain": self.target_domain,
            "image_size": list(self.image_size),
            "student_model": to_dict(self.cfg.model),
            "teacher": self.teacher_info,
            "anchor": anchor_metadata(self.hm),
        }


def build(cfg: StudentConfig, dataset: Any, device: torch.device, rank: int = 0) -> Student:
    """A student for ``dataset`` (a DistillFrames) on ``device``."""
    first = dataset[0]["source"]
    frames = dataset.frames
    hm = fit_student_anchor(cfg.model.anchor, dataset, frames.source_domain, frames.target_domain)
    method = Student(cfg, device, tuple(first.shape[-2:]), frames.source_domain, frames.target_domain, hm)
    method.teacher_info = dataset.teacher_info
    return method


def fit_student_anchor(kind: str, dataset: Any, source: str, target: str) -> Any:
    """The anchor ``kind`` of a generator source -> target, fitted on the training ``dataset`` (items with
    "source" and "target" frames; a DistillFrames or an UnpairedDataset): None for "none"; the histogram map of
    the ``target`` frames (taken from the items' "target", or "source" when ``target`` is the dataset's source
    domain, as for a CycleGAN's G_ba); the depth-wise affine map from the prepared folder of the dataset's frames
    (its ``root`` and ``split``: the same fit as the DDGAN/cascade teachers' ``anchor: depth_affine``)."""
    if kind == "none":
        return None
    frames = getattr(dataset, "frames", dataset)
    if kind == "histogram_match":
        return fit_anchor(dataset, source, target, key="source" if target == frames.source_domain else "target")
    if kind == "depth_affine":
        return fit_affine_dataset(frames, getattr(frames, "split", ""), source, target, depth=True)
    raise SonoshiftError(f"unknown student anchor '{kind}'; choose none, histogram_match or depth_affine.")


def teacher_targets(
    teacher: Any, frames: np.ndarray, *, samples: int = 1, batch_size: int = 8, seed: int = 0,
    device: torch.device | None = None, progress: bool = False,
) -> np.ndarray:
    """The teacher's translation of uint8 source frames (N, H, W) -> uint8 (N, H, W) (at the frames' size).

    Stochastic teachers draw from a generator seeded by ``seed`` (K > 1: the mean of K samples per frame)."""
    from sonoshift.inference.sampling import MeanOfSamples
    from sonoshift.inference.translate import run_translator, to_signed, to_uint8

    g = make_generator(seed, 5000)
    model = MeanOfSamples(teacher, samples) if samples > 1 else teacher
    y = run_translator(model, to_signed(np.asarray(frames)), batch_size=batch_size, device=device,
                       generator=g if teacher.stochastic else None, progress=progress, description="teacher targets")
    return to_uint8(y)


def _kept_targets(path: str, key: str) -> np.ndarray | None:
    """The teacher targets kept at ``path`` when its sidecar says they were made with ``key``, else None."""
    if not path or not Path(path).is_file() or not Path(path + ".json").is_file():
        return None
    try:
        if json.loads(Path(path + ".json").read_text(encoding="utf-8")).get("key") != key:
            return None
        arr = np.load(path)
    except (OSError, ValueError):
        return None
    return arr if arr.dtype == np.uint8 and arr.ndim == 3 else None


def _keep_targets(path: str, key: str, targets: np.ndarray) -> None:
    """Write the targets (.npy) and their sidecar (.json with ``key``), each atomically, the array first."""
    import io

    from sonoshift.atomic import atomic_write_bytes, atomic_write_text

    buf = io.BytesIO()
    np.save(buf, targets)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path + ".json", json.dumps({"key": key, "shape": list(targets.shape)}) + "\n")


def training_data(data: Path, cfg: StudentConfig) -> DistillFrames:
    """The distillation dataset: the teacher's domains in ``data``, each source frame with the teacher's
    translation (computed here, once per run, at the teacher's size; seeded, so a resumed run gets the same)."""
    from sonoshift.data.cache import load_cache
    from sonoshift.data.datasets import UnpairedDataset
    from sonoshift.engine.checkpoint import read_model
    from sonoshift.engine.device import select_device
    from sonoshift.inference.translate import resize_batch, to_signed, to_uint8
    from sonoshift.methods import load_translator

    if not cfg.teacher:
        raise SonoshiftError("config key 'teacher' is empty: give the trained translator to distil (--teacher RUN).")
    ckpt = read_model(cfg.teacher, expected="a translator to distil")
    device = select_device(cfg.train.device)
    tr = load_translator(cfg.teacher, device=device)
    d = cfg.data
    frames = UnpairedDataset(data, d.split, tr.source_domain, tr.target_domain, seed=cfg.train.seed, size=d.size)
    source = np.asarray(load_cache(data, d.split, tr.source_domain))
    if tuple(source.shape[-2:]) != tuple(tr.image_size):
        source = to_uint8(resize_batch(to_signed(source), tuple(tr.image_size)))
    seed = cfg.train.seed if d.teacher_seed is None else d.teacher_seed
    key = settings_key({"teacher": [str(Path(ckpt.path).resolve()), ckpt.state.get("step"),
                                    ckpt.state.get("checksums")],
                        "frames": hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest(),
                        "shape": list(source.shape), "samples": d.teacher_samples, "seed": seed})
    targets = _kept_targets(d.targets_file, key)
    if targets is None:
        targets = teacher_targets(tr, source, samples=d.teacher_samples, batch_size=d.teacher_batch,
                                  seed=seed, device=device)
        if d.targets_file:
            _keep_targets(d.targets_file, key, targets)
    ds = DistillFrames(frames, targets)
    ds.teacher_info = {"path": str(Path(ckpt.path).resolve()), "method": ckpt.method, "step": ckpt.state.get("step"),
                       "samples": d.teacher_samples, "seed": seed}
    return ds


def distill(
    teacher: str | Path, data: str | Path, cfg: StudentConfig, out: str | Path, *, resume: bool = False,
    progress: bool = True, config_name: str | None = None,
) -> TrainResult:
    """Distil the translator ``teacher`` (checkpoint/run folder) into a student trained on the prepared dataset
    ``data`` into the run folder ``out`` (API of `sonoshift distill`, i.e. `sonoshift train student --teacher`)."""
    from dataclasses import replace

    return train_method("student", data, out, cfg=replace(cfg, teacher=str(teacher)), resume=resume,
                        progress=progress, config_name=config_name)


class StudentTranslator(GeneratorTranslator):
    """The student generator as a translator: (B,1,H,W) in [-1,1] -> same; follows the input's device."""

    method = "student"


def load_translator(ckpt: ModelCheckpoint, device: torch.device | None = None, *, use_ema: bool = True
                    ) -> StudentTranslator:
    """The student of a distillation checkpoint."""
    meta = ckpt.state.get("metadata", {})
    m = from_dict(StudentModel, meta.get("student_model") or {})
    size = tuple(int(v) for v in meta.get("image_size", (256, 256)))
    hm = anchor_from_metadata(meta.get("anchor"), meta["source_domain"], meta["target_domain"], size)
    net = load_module(ckpt, "G", build_student(m, hm), prefer_ema=use_ema)
    if device is not None:
        net.to(device)
    return StudentTranslator(net, size, meta["source_domain"], meta["target_domain"])  # type: ignore[arg-type]


SPEC = register(MethodSpec(
    name="student", kind="translator", config=StudentConfig, dataset=training_data, build=build,
    load=load_translator, summary="Distil a trained translator into a compact student (L1 to the teacher + GAN).",
    default_config="configs/cpu/student.yaml", needs={"teacher": "cascade"},
))

__all__ = ["DistillFrames", "Student", "StudentConfig", "StudentTranslator", "build", "build_student", "distill",
           "fit_student_anchor", "load_translator", "teacher_targets", "training_data"]
