"""The judges of the synthesis evaluation: the project's downstream models (docs/judges.md) behind one protocol.

``Judges``: ``embed(x)`` (an ultrasound-domain embedding, (N, D)), ``feature_maps(x)`` (conv feature maps for a
perceptual distance), ``plane_logits(x)`` over ``planes``, ``ga_weeks(x)`` (GA read off the image), all on
images (N, 1, H, W) in [-1, 1]. Any object with these members plugs in.

``ProjectJudges`` is that protocol over the issue-14 models: the plane classifier
(``sonoshift.judges.plane``: PlaneNet, class-balanced batches, classical augmentation, early stopping on the
validation macro-F1; recipe ``configs/cpu/plane_classifier.yaml`` at the evaluation size) and the direct
image -> GA regressor (``sonoshift.judges.ga.regressor.GaRegressorNet``, L1 on weeks, no zoom augmentation). The
classifier's penultimate features are the embedding, its stage outputs the perceptual feature maps. Both are
trained by :func:`train_judges` on REAL frames only (the regressor on head-plane frames with a known GA), so
they judge the synthesizer rather than learn from it. Saved as a ``plane/`` classifier checkpoint (readable by
``sonoshift classify``) and a ``ga/`` regressor checkpoint (``load_regressor``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sonoshift
from sonoshift.atomic import atomic_write_text
from sonoshift.config import from_dict, load_config, to_dict
from sonoshift.engine.checkpoint import module_tensors, write_checkpoint
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.regressor import METHOD as GA_METHOD
from sonoshift.judges.ga.regressor import GaRegressorNet, RegressorConfig, load_regressor, predict_ga
from sonoshift.judges.plane.augment import augment
from sonoshift.judges.plane.checkpoint import PlaneClassifier, config_dict, load_classifier, save_classifier
from sonoshift.judges.plane.net import NetConfig
from sonoshift.judges.plane.train import ClassifierConfig, train_classifier
from sonoshift.progress import make_progress

PLANE_RECIPE = "cpu/plane_classifier"


class Judges(Protocol):
    """What the synthesis evaluation needs from the downstream models."""

    planes: tuple[str, ...]
    label: str

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def plane_logits(self, x: torch.Tensor) -> torch.Tensor: ...

    def ga_weeks(self, x: torch.Tensor) -> torch.Tensor: ...


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    x = x.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class ProjectJudges:
    """A trained plane classifier (and optionally a GA regressor with its input size) as :class:`Judges`."""

    def __init__(self, plane: PlaneClassifier, ga: GaRegressorNet | None = None, ga_size: int = 0) -> None:
        self.clf = plane
        self.net = plane.model.eval().requires_grad_(False)
        self.ga = ga.eval().requires_grad_(False) if ga is not None else None
        self.ga_size = int(ga_size or plane.image_size)
        self.planes = tuple(plane.classes)
        self.size = int(plane.image_size)
        self.label = ("sonoshift plane classifier (judges.plane PlaneNet) + direct image -> GA regressor "
                      "(judges.ga GaRegressorNet), trained on real frames")

    @torch.no_grad()
    def _batched(self, fn, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        return torch.cat([fn(_resize(x[i:i + batch], self.size)) for i in range(0, x.shape[0], batch)])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._batched(self.net.features, x)

    @torch.no_grad()
    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's and every stage's output (each ends in a ``nn.Sequential`` of the classifier body)."""
        outs, h = [], _resize(x, self.size)
        for layer in self.net.body:
            h = layer(h)
            if isinstance(layer, nn.Sequential):
                outs.append(h)
        return outs

    def plane_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._batched(self.net, x)

    def ga_weeks(self, x: torch.Tensor) -> torch.Tensor:
        """GA in weeks (flip-averaged, as ``predict_ga``); NaN everywhere without a regressor."""
        if self.ga is None:
            return torch.full((x.shape[0],), math.nan)
        return torch.from_numpy(predict_ga(self.ga, _resize(x, self.ga_size))).float()

    def save(self, folder: str | Path) -> None:
        """``plane/`` (classifier checkpoint) and, with a regressor, ``ga/`` (regressor checkpoint)."""
        folder = Path(folder)
        save_classifier(self.clf, folder / "plane")
        if self.ga is not None:
            net = from_dict(ClassifierConfig, self.clf.config).net  # the regressor shares the classifier's shape
            cfg = RegressorConfig(image_size=self.ga_size, net=net)
            state = {"method": GA_METHOD, "sonoshift_version": sonoshift.__version__, "image_size": self.ga_size,
                     "input_range": [-1.0, 1.0], "output": "GA weeks", "config": to_dict(cfg),
                     "info": {"trained_by": "sonoshift evaluate-synth on real frames"}, "step": 0}
            write_checkpoint(folder / "ga", 0, model=module_tensors("model/regressor", self.ga.state_dict()),
                             train={}, state=state, keep_last=1)
            atomic_write_text(folder / "ga" / "regressor.json", json.dumps(state, indent=2) + "\n")


def load_judges(folder: str | Path) -> ProjectJudges:
    """Judges saved by :meth:`ProjectJudges.save`, or a plane-classifier run (``sonoshift classify train``)
    given directly (then without GA)."""
    folder = Path(folder)
    plane_dir = folder / "plane" if (folder / "plane").is_dir() else folder
    try:
        clf = load_classifier(plane_dir)
    except SonoshiftError as e:
        raise SonoshiftError(f"{folder} holds no plane classifier judges ({e})") from None
    ga, size = (None, 0)
    if (folder / "ga").is_dir():
        ga, size = load_regressor(folder / "ga")
    return ProjectJudges(clf, ga, size)


def train_ga_regressor(
    images: torch.Tensor, ga: torch.Tensor, *, net: NetConfig, steps: int = 600, batch: int = 16,
    lr: float = 2e-3, seed: int = 0, progress: bool = True,
) -> GaRegressorNet:
    """``GaRegressorNet`` trained with the HC18 regressor's recipe (AdamW, cosine LR, L1 on weeks, rotation and
    flip/gamma/speckle augmentation but no zoom: size is the GA signal) on images (N, 1, S, S) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GaRegressorNet(net)
    aug = RegressorConfig().augment
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    with make_progress() as p:
        task = p.add_task("train GA judge", total=steps, info="", visible=progress)
        for _ in range(steps):
            idx = torch.randint(len(ga), (min(batch, len(ga)),), generator=g)
            loss = F.l1_loss(model(augment(images[idx], aug, g)), ga[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            p.advance(task)
    return model.eval()


def train_judges(
    images: torch.Tensor, plane: torch.Tensor, ga: torch.Tensor, planes: Sequence[str], *,
    val_images: torch.Tensor | None = None, val_plane: torch.Tensor | None = None, head_plane: str = "brain",
    plane_steps: int = 0, ga_steps: int = 600, seed: int = 0, progress: bool = True,
    plane_overrides: Sequence[str] = (),
) -> ProjectJudges:
    """Train the judges on REAL frames: images (N, 1, S, S) in [-1, 1], plane (N,) index into ``planes`` (-1
    unknown), ga (N,) weeks (NaN unknown). The classifier follows ``configs/cpu/plane_classifier.yaml`` at size S
    (``plane_steps`` > 0 replaces its step budget; ``plane_overrides``, ``KEY=VALUE`` strings such as
    ``train.patience=6``, change any other field of that recipe) with early stopping on ``val_*`` when given; the GA regressor
    trains on the ``head_plane`` frames with a known GA (none when fewer than 4). Deterministic for a seed."""
    known = plane >= 0
    if int(known.sum()) == 0:
        raise SonoshiftError("the judges need frames with plane labels.")
    size = int(images.shape[-1])
    over = [f"image_size={size}", f"train.seed={seed}"] + ([f"train.steps={plane_steps}"] if plane_steps else [])
    over += list(plane_overrides)
    cfg = load_config(ClassifierConfig, PLANE_RECIPE, over)
    cfg = replace(cfg, classes=tuple(planes))
    y = plane[known].numpy().astype(np.int64)
    xv = yv = None
    if val_images is not None and val_plane is not None and int((val_plane >= 0).sum()):
        vk = val_plane >= 0
        xv, yv = val_images[vk], val_plane[vk].numpy().astype(np.int64)
    model, info = train_classifier(images[known], y, tuple(planes), cfg, xv, yv, progress=progress)
    clf = PlaneClassifier(model=model, classes=tuple(planes), image_size=size, label="plane",
                          config=config_dict(cfg), info={**info, "data": {"trained_by": "evaluate-synth"}})
    head = head_plane in planes and (plane == list(planes).index(head_plane)) & torch.isfinite(ga)
    reg = None
    if head is not False and int(head.sum()) >= 4:
        reg = train_ga_regressor(images[head], ga[head].float(), net=cfg.net, steps=ga_steps, seed=seed + 1,
                                 progress=progress)
    return ProjectJudges(clf, reg, size)


__all__ = ["Judges", "ProjectJudges", "load_judges", "train_ga_regressor", "train_judges"]
