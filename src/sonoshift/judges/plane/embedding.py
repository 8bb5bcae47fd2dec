"""The plane classifier as an ultrasound-domain embedding: a feature extractor for FID / KID and a perceptual
distance, as answers to "ImageNet LPIPS may not reflect ultrasound structure".

- ``PlaneFeatures``: images in [0, 1] (B, 1, H, W) -> the classifier's penultimate features (B, D) (global
  average of its last stage), the contract of ``sonoshift.metrics.fid.extract_features``.
- ``PlanePerceptualDistance``: LPIPS's recipe on the classifier's stage outputs: unit-normalize each stage's
  channels, squared difference, spatial mean, channel mean, averaged over stages with equal weights (no linear
  heads are learned: the features themselves are learned on ultrasound). 0 for identical images, >= 0.
ImageNet LPIPS stays available (``sonoshift.metrics.lpips``) wherever its weights load.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.checkpoint import PlaneClassifier, load_classifier
from sonoshift.judges.plane.zoom import ZoomEnsemble
from sonoshift.metrics.lpips import normalize_channels


def _prepare(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    x = x.float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear",
                          **({} if x.shape[-1] > size else {"align_corners": False}))
    return x * 2 - 1


class PlaneFeatures(nn.Module):
    """Frozen plane-classifier features: (B, 1, H, W) in [0, 1] -> (B, D)."""

    def __init__(self, clf: PlaneClassifier) -> None:
        super().__init__()
        self.net = clf.model.eval().requires_grad_(False)
        self.size = clf.image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(_prepare(x, self.size))


class PlanePerceptualDistance(nn.Module):
    """``forward(a, b)`` on images in [0, 1] -> (B,) distances over the classifier's stage outputs."""

    def __init__(self, clf: PlaneClassifier) -> None:
        super().__init__()
        if isinstance(clf.model, ZoomEnsemble):
            raise SonoshiftError("the perceptual distance compares one network's stage outputs: use the classifier "
                                 "itself, not its zoom ensemble.")
        self.net = clf.model.eval().requires_grad_(False)
        self.size = clf.image_size

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, h = [], x
        for layer in self.net.body:
            h = layer(h)
            if isinstance(layer, nn.Sequential):  # a stage (or the stem) ends here
                outs.append(h)
        return outs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self._stages(_prepare(a, self.size)), self._stages(_prepare(b, self.size))
        per_stage = [((normalize_channels(x) - normalize_channels(y)) ** 2).sum(1).mean(dim=(1, 2))
                     for x, y in zip(fa, fb)]
        return torch.stack(per_stage, 0).mean(0)


def load_plane_extractor(path: str | Path) -> tuple[nn.Module, str]:
    """(feature extractor, label) for ``sonoshift.metrics.fid``: the label names the classifier and says that
    the numbers are comparable only between runs scored with the same classifier."""
    clf = load_classifier(path)
    data = clf.info.get("data", {}).get("dataset", "?")
    label = (f"plane-classifier features ({Path(str(path)).name}: {len(clf.classes)} classes, trained on "
             f"{Path(str(data)).name}; ultrasound-domain; not comparable to Inception-FID)")
    return PlaneFeatures(clf), label
