"""The fetal plane classifier (``sonoshift.judges.plane``) in the method registry, kind ``judge``.

``sonoshift.methods.load_model(RUN)`` on a `sonoshift classify train` folder returns a :class:`PlaneJudge`:
images (B,1,H,W) in [-1,1] of any size -> class probabilities (B,C); ``features`` -> the penultimate embedding
(B,D). Training stays `sonoshift classify train` (early stopping on validation macro-F1, class balancing), not
the shared engine, so `sonoshift train` does not list it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sonoshift.engine.checkpoint import ModelCheckpoint
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.checkpoint import METHOD, PlaneClassifier, load_classifier
from sonoshift.judges.plane.train import ClassifierConfig
from sonoshift.methods import MethodSpec, register
from sonoshift.methods.kinds import JudgeBase


class PlaneJudge(JudgeBase):
    """A trained plane classifier as a judge; follows the input's device."""

    method, task = METHOD, "plane"

    def __init__(self, clf: PlaneClassifier) -> None:
        self.clf = clf
        self.net = clf.model.eval().requires_grad_(False)
        self.classes = tuple(clf.classes)
        self.image_size = int(clf.image_size)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"plane judge input must be (B,1,H,W) in [-1,1], got {tuple(x.shape)}.")
        p = next(self.net.parameters())
        if p.device != x.device:
            self.net.to(x.device)
        s = self.image_size
        x = x.to(p.dtype)
        if tuple(x.shape[-2:]) != (s, s):  # as the training frames were made: area when shrinking
            x = F.interpolate(x, size=(s, s), mode="area") if min(x.shape[-2:]) > s else \
                F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C), columns in ``classes`` order."""
        with torch.no_grad():
            return torch.softmax(self.net(self._input(x)).float(), 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate embedding (B, D) (global average of the last stage)."""
        with torch.no_grad():
            return self.net.features(self._input(x)).float()


def load(ckpt: ModelCheckpoint, device: torch.device | None = None) -> PlaneJudge:
    return PlaneJudge(load_classifier(ckpt.path, device))


SPEC = register(MethodSpec(
    name=METHOD, kind="judge", config=ClassifierConfig, dataset=None, build=None, load=load,
    summary="Fetal plane classifier (compact CNN; early stopping on validation macro-F1).",
    default_config="configs/cpu/plane_classifier.yaml", trainer="sonoshift classify train",
))

__all__: list[Any] = ["PlaneJudge", "SPEC"]
