"""A MONAI U-Net segmenter: config, build, a short explicit training loop, prediction, and checkpoints.

Images go in as uint8 frames of any size (or float tensors in [-1, 1] at the model size); the segmenter resizes
them to its square ``image_size``, predicts class probabilities, and resizes those back (bilinear) before the
argmax, so label maps come out at each frame's own size. Checkpoints are a folder with ``model.safetensors``
(weights only, never pickle) and ``segmenter.json`` (config, class names, image size, training summary).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
import torch
from torch import nn

import sonoshift
from sonoshift.atomic import atomic_dir
from sonoshift.engine.checkpoint import file_digest
from sonoshift.engine.ema import EMA
from sonoshift.engine.schedules import cosine_factor
from sonoshift.config import (
    NonNegFloat, NonNegInt, PosFloat, PosInt, Range, Seed, UnitFloat, Validated, from_dict, to_dict,
)
from sonoshift.errors import SonoshiftError
from sonoshift.progress import make_progress

WEIGHTS_NAME = "model.safetensors"
META_NAME = "segmenter.json"


@dataclass(frozen=True)
class ModelConfig(Validated):
    """U-Net shape: one entry of ``channels`` per level, ``strides`` has one entry fewer."""

    channels: tuple[PosInt, ...] = (16, 32, 64, 128)
    strides: tuple[PosInt, ...] = (2, 2, 2)
    num_res_units: NonNegInt = 1
    dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0


@dataclass(frozen=True)
class SegmenterTrainConfig(Validated):
    """The training loop: Adam on Dice + cross-entropy, random flips and intensity jitter."""

    steps: PosInt = 600
    batch_size: PosInt = 8
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 1e-5
    seed: Seed = 0
    hflip: bool = True
    vflip: bool = False
    intensity_jitter: NonNegFloat = 0.1  # contrast/brightness scale, as a fraction of the [-1, 1] range
    noise_std: NonNegFloat = 0.02  # additive Gaussian noise on the [-1, 1] input
    rotate_deg: NonNegFloat = 0.0  # random rotation in [-rotate_deg, rotate_deg] (image and labels alike)
    scale: NonNegFloat = 0.0  # random zoom in [1 - scale, 1 + scale]
    translate: NonNegFloat = 0.0  # random shift, fraction of the side
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: lr decays to 0 at the last step
    log_every: PosInt = 25
    # random gamma on the [0, 1]-mapped image: exponent exp(u log(1 + gamma)), u uniform in [-1, 1]; 0 = off
    gamma: NonNegFloat = 0.0
    # extra cross-entropy weight on pixels within boundary_width pixels of a label boundary (boundary_loss.py)
    boundary_weight: NonNegFloat = 0.0
    boundary_width: PosInt = 2
    # acoustic-shadow wedge: with this probability per sample, the image (not the labels) is darkened to a factor in
    # [0, 0.5] inside a wedge about the image centre, up to shadow_width_deg wide (soft edges): a head-centred crop
    # then shows part of its skull wall missing, as in frames whose lateral walls are parallel to the beam; 0 = off
    shadow: UnitFloat = 0.0
    shadow_width_deg: Annotated[float, Range(1, 360)] = 120.0
    # exponential moving average of the weights (engine/ema.py, with warm-up); > 0: the trained network is the
    # average, not the last iterate (a constant learning rate ends on a noisy iterate); 0 = off
    ema_decay: Annotated[float, Range(0, 1, hi_open=True)] = 0.0


@dataclass(frozen=True)
class Segmenter:
    """A trained network with what is needed to use it: class names, input size and the config it came from."""

    model: nn.Module
    classes: tuple[str, ...]
    image_size: int
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_unet(cfg: ModelConfig, num_classes: int, in_channels: int = 1) -> nn.Module:
    """A 2D MONAI ``UNet`` with ``num_classes`` output logits; ``image_size`` must be divisible by prod(strides)."""
    from monai.networks.nets import UNet

    if len(cfg.strides) != len(cfg.channels) - 1:
        raise SonoshiftError(
            f"segmenter model config needs len(strides) == len(channels) - 1, got {cfg.strides} and {cfg.channels}."
        )
    if num_classes < 1:
        raise SonoshiftError(f"a U-Net needs at least one output channel, got {num_classes}.")
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=tuple(cfg.channels),
        strides=tuple(cfg.strides),
        num_res_units=cfg.num_res_units,
        dropout=cfg.dropout,
    )


def frames_to_input(frames: Sequence[np.ndarray] | np.ndarray, size: int) -> torch.Tensor:
    """uint8 frames (each (H, W), any size) -> float32 tensor (N, 1, size, size) in [-1, 1] (INTER_AREA resize)."""
    out = np.empty((len(frames), 1, size, size), dtype=np.float32)
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.ndim != 2:
            raise SonoshiftError(f"frame {i} must be a single-channel (H, W) image, got shape {f.shape}.")
        r = f if f.shape == (size, size) else cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
        out[i, 0] = r.astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(out)


def labels_to_target(labels: Sequence[np.ndarray] | np.ndarray, size: int) -> torch.Tensor:
    """Integer label maps (each (H, W)) -> int64 tensor (N, size, size), nearest-neighbour resize."""
    out = np.empty((len(labels), size, size), dtype=np.int64)
    for i, lab in enumerate(labels):
        lab = np.asarray(lab)
        r = lab if lab.shape == (size, size) else cv2.resize(
            lab.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST
        )
        out[i] = r
    return torch.from_numpy(out)


def augment(
    x: torch.Tensor, y: torch.Tensor, cfg: SegmenterTrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips (same for image and labels), affine, gamma, contrast/brightness jitter and noise; images stay
    in [-1, 1].

    ``x`` (B, 1, H, W) float, ``y`` (B, H, W) long; random draws come from ``generator`` (on the CPU).
    """
    b = x.shape[0]
    dev = x.device
    if cfg.hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None, None], y.flip(-1), y)
    if cfg.vflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(-2), x)
        y = torch.where(flip[:, None, None], y.flip(-2), y)
    if cfg.rotate_deg or cfg.scale or cfg.translate:
        x, y = _affine(x, y, cfg, generator)
    if cfg.shadow > 0:
        x = shadow_wedge(x, cfg.shadow, cfg.shadow_width_deg, generator)
    if cfg.gamma > 0:
        ex = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * math.log1p(cfg.gamma)).to(dev)
        x = ((x + 1) * 0.5).clamp(0, 1) ** ex[:, None, None, None] * 2 - 1
    if cfg.intensity_jitter > 0:
        j = cfg.intensity_jitter
        scale = (1 + (torch.rand(b, generator=generator) * 2 - 1) * j).to(dev)
        shift = ((torch.rand(b, generator=generator) * 2 - 1) * j).to(dev)
        x = (x + 1) * scale[:, None, None, None] - 1 + shift[:, None, None, None]
    if cfg.noise_std > 0:
        x = x + torch.randn(x.shape, generator=generator).to(dev) * cfg.noise_std
    return x.clamp(-1, 1), y


def shadow_wedge(x: torch.Tensor, p: float, width_deg: float, generator: torch.Generator) -> torch.Tensor:
    """With probability ``p`` per sample, darken ``x`` (B, 1, H, W) in [-1, 1] (as [0, 1] levels) to a factor
    drawn in [0, 0.5] inside a wedge about the image centre: direction uniform, width uniform in
    [width_deg / 3, width_deg], edges tapered linearly over a fifth of the width. Other samples are unchanged."""
    b, _, h, w = x.shape
    u = torch.rand(4, b, generator=generator).to(x.device)
    on, phi, width, factor = u[0] < p, u[1] * 2 * math.pi, math.radians(width_deg) * (1 + 2 * u[2]) / 3, 0.5 * u[3]
    rows = torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2
    cols = torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2
    theta = torch.atan2(rows[:, None], cols[None, :])[None]  # (1, H, W)
    off = torch.remainder(theta - phi[:, None, None] + math.pi, 2 * math.pi) - math.pi  # angle to the axis
    half = width[:, None, None] / 2
    inside = ((half - off.abs()) / (0.2 * width[:, None, None])).clamp(0, 1) * on[:, None, None]
    gain = 1 - inside * (1 - factor[:, None, None])
    return ((x + 1) * 0.5 * gain[:, None] * 2 - 1).to(x.dtype)


def _affine(
    x: torch.Tensor, y: torch.Tensor, cfg: SegmenterTrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random rotation / zoom / shift per sample, bilinear for images (outside = -1), nearest for labels
    (outside = 0, background)."""
    b, dev = x.shape[0], x.device
    u = [(torch.rand(b, generator=generator) * 2 - 1).to(dev) for _ in range(4)]
    ang = u[0] * math.radians(cfg.rotate_deg)
    s = 1 + u[1] * cfg.scale
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, u[2] * 2 * cfg.translate], 1),
                         torch.stack([sin, cos, u[3] * 2 * cfg.translate], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x + 1, grid, mode="bilinear", align_corners=False) - 1
    y = torch.nn.functional.grid_sample(y[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0]
    return x, y.round().long()


def train_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    model_cfg: ModelConfig,
    train_cfg: SegmenterTrainConfig,
    *,
    config: dict[str, Any] | None = None,
    progress: bool = True,
    description: str = "train segmenter",
) -> Segmenter:
    """Train a U-Net from scratch on ``images`` (N, 1, S, S) in [-1, 1] and ``labels`` (N, S, S) class ids.

    Runs ``train_cfg.steps`` Adam steps on Dice + cross-entropy with batches drawn as seeded epoch permutations.
    The model lives on ``images.device``. Returns a ``Segmenter`` whose ``info`` holds the loss history
    (one mean per ``log_every`` steps). Same seed and data -> same weights (on CPU).
    """
    from monai.losses import DiceCELoss

    from sonoshift.downstream.boundary_loss import BoundaryDiceCELoss

    if images.ndim != 4 or images.shape[1] != 1 or images.shape[-1] != images.shape[-2]:
        raise SonoshiftError(f"training images must be (N, 1, S, S), got {tuple(images.shape)}.")
    if labels.shape != (images.shape[0], *images.shape[-2:]):
        raise SonoshiftError(f"training labels must be (N, S, S) matching the images, got {tuple(labels.shape)}.")
    if images.shape[0] == 0:
        raise SonoshiftError("there are no training frames for the segmenter.")
    n_cls = len(classes)
    if n_cls < 2:
        raise SonoshiftError(f"a segmenter needs at least 2 classes, got {n_cls}.")
    if int(labels.max()) >= n_cls or int(labels.min()) < 0:
        raise SonoshiftError(f"training labels hold ids outside 0..{n_cls - 1} for classes {list(classes)}.")
    size = int(images.shape[-1])
    factor = math.prod(model_cfg.strides)
    if size % factor:
        raise SonoshiftError(f"segmenter image size {size} must be divisible by {factor} (product of strides).")

    device = images.device
    g = torch.Generator().manual_seed(int(train_cfg.seed))
    # MONAI's layers draw their initial weights from the global generator: seed it in a fork, leave it untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(train_cfg.seed))
        model = build_unet(model_cfg, n_cls)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    ema = EMA(model, train_cfg.ema_decay, warmup=True) if train_cfg.ema_decay > 0 else None
    loss_fn = (BoundaryDiceCELoss(train_cfg.boundary_weight, train_cfg.boundary_width) if train_cfg.boundary_weight
               else DiceCELoss(to_onehot_y=True, softmax=True))

    n = images.shape[0]
    bs = min(train_cfg.batch_size, n)
    order = torch.randperm(n, generator=g)
    pos = 0
    history: list[float] = []
    window: list[float] = []
    model.train()
    with make_progress() as p:
        task = p.add_task(description, total=train_cfg.steps, info="", visible=progress)
        for step in range(train_cfg.steps):
            if pos + bs > n:
                order, pos = torch.randperm(n, generator=g), 0
            idx = order[pos : pos + bs].to(device)
            pos += bs
            if train_cfg.lr_schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = train_cfg.lr * cosine_factor(step, train_cfg.steps)
            x, y = augment(images[idx], labels[idx], train_cfg, g)
            loss = loss_fn(model(x), y[:, None])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(model)
            window.append(float(loss.detach()))
            if len(window) == train_cfg.log_every or step == train_cfg.steps - 1:
                history.append(float(np.mean(window)))
                window = []
                p.update(task, info=f"loss {history[-1]:.3f}")
            p.advance(task)
    if ema is not None:
        model = ema.module.requires_grad_(True)
    model.eval()
    info = {"steps": train_cfg.steps, "loss_history": history, "train_frames": n}
    # The checkpoint rebuilds the network from config["model"]: always store the shape actually trained.
    config = {**(config or {}), "model": to_dict(model_cfg), "train": to_dict(train_cfg)}
    return Segmenter(model=model, classes=tuple(classes), image_size=size, config=config, info=info)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Logits (N, C, S, S) for inputs ``x`` (N, 1, S, S) in [-1, 1]; runs on the model's device, returns on CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def predict_proba(seg: Segmenter, frames: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """Softmax probabilities (C, H, W) float32 per uint8 frame, at each frame's own size (H, W)."""
    x = frames_to_input(frames, seg.image_size)
    probs = torch.softmax(predict_logits(seg.model, x, batch_size), dim=1)
    out = []
    for f, pr in zip(frames, probs):
        h, w = np.asarray(f).shape
        if (h, w) != tuple(pr.shape[-2:]):
            pr = torch.nn.functional.interpolate(pr[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        out.append(pr.numpy())
    return out


def predict(seg: Segmenter, frames: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """Label maps (H, W) uint8 of class ids (index into ``seg.classes``), one per uint8 frame, at its own size."""
    return [p.argmax(0).astype(np.uint8) for p in predict_proba(seg, frames, batch_size)]


def save_segmenter(seg: Segmenter, path: str | Path) -> Path:
    """Write the checkpoint folder ``path`` atomically: ``model.safetensors`` + ``segmenter.json``. Returns ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {
        "format": "sonoshift-segmenter",
        "sonoshift_version": sonoshift.__version__,
        "architecture": "monai.networks.nets.UNet",
        "classes": list(seg.classes),
        "image_size": seg.image_size,
        "in_channels": 1,
        "input_range": [-1.0, 1.0],
        "config": seg.config,
        "info": seg.info,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in seg.model.state_dict().items()}
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "sonoshift-segmenter"})
        meta["weights_sha256"] = file_digest(tmp / WEIGHTS_NAME)  # verified on load
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return path


def load_segmenter(path: str | Path, device: str | torch.device | None = None) -> Segmenter:
    """Read a checkpoint folder written by ``save_segmenter`` (weights via safetensors, no pickle).

    ``device`` is where the model goes (None: CPU, as stored). Errors name the folder and what is missing.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta_file, weights_file = path / META_NAME, path / WEIGHTS_NAME
    if not meta_file.is_file() or not weights_file.is_file():
        raise SonoshiftError(f"segmenter checkpoint {path} must be a folder with {META_NAME} and {WEIGHTS_NAME}.")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        model_cfg = from_dict(ModelConfig, meta["config"].get("model", {}))
        classes = tuple(meta["classes"])
        size = int(meta["image_size"])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise SonoshiftError(f"segmenter checkpoint {meta_file} is not valid ({e.__class__.__name__}: {e}).") from None
    if meta.get("weights_sha256") and file_digest(weights_file) != meta["weights_sha256"]:
        raise SonoshiftError(f"segmenter weights {weights_file} are damaged: they do not match the checksum in "
                             f"{META_NAME} (flipped bits or an incomplete copy); copy or train it again.")
    model = build_unet(model_cfg, len(classes))
    try:
        model.load_state_dict(load_file(str(weights_file)))
    except Exception as e:  # noqa: BLE001 - safetensors header errors and shape mismatches alike
        raise SonoshiftError(f"segmenter weights {weights_file} do not fit its {META_NAME} ({e}).") from None
    model.eval()
    if device is not None:
        model.to(device)
    return Segmenter(model=model, classes=classes, image_size=size, config=meta["config"], info=meta.get("info", {}))
