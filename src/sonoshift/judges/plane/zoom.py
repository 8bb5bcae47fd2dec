"""A plane classifier that looks at each frame at several zooms (a test-time zoom ensemble), optionally re-normalized
on unlabelled frames of the new domain at each zoom (AdaBN, adapt.py).

Why: a classifier trained on one scanner's frames learns the anatomy at that scanner's usual depth setting. Frames
from a probe with a wider field of view (the African centres against FETAL_PLANES_DB, a handheld probe swept at
depth) show the same anatomy smaller, and no intensity map fixes that. The depth setting of a new clinic's frames is
unknown and varies frame to frame, so instead of estimating one zoom the ensemble averages the softmax over a few
centred zooms (1 = as is; 1.25 = the central 80 % enlarged to the frame); with unlabelled frames (``adapt``) each
zoom's copy of the network gets the BatchNorm statistics of those frames zoomed alike. No label is read and no
weight is learned. It helps where the new frames' anatomy is smaller than the training frames' (Spain -> Africa:
+6 points over AdaBN alone) and costs a few points where it is not (docs/judges.md), so it is opt-in.

``ZoomEnsemble`` is a drop-in for ``PlaneNet`` (forward gives log-probabilities, ``features`` the mean penultimate
features); ``save_classifier`` / ``load_classifier`` store and rebuild it (``zooms`` in the checkpoint state).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.data import to_input

DEFAULT_ZOOMS = (1.0, 1.25, 1.5)


def check_zooms(zooms: Sequence[float]) -> tuple[float, ...]:
    """The zooms as a tuple of floats; one clear sentence for an empty list or a zoom that is not positive."""
    z = tuple(float(v) for v in zooms)
    if not z or not all(np.isfinite(v) and v > 0 for v in z):
        raise SonoshiftError(f"zooms must be a non-empty list of positive numbers, got {list(zooms)}.")
    return z


def zoom_tensor(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Frames (N, 1, S, S) in [-1, 1] zoomed about their centre, same size: ``zoom`` > 1 enlarges the central
    1 / zoom of the frame (bilinear), < 1 shrinks the frame into a black border (-1, an empty field of view)."""
    if zoom == 1.0:
        return x
    theta = torch.tensor([[1 / zoom, 0.0, 0.0], [0.0, 1 / zoom, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


class ZoomEnsemble(nn.Module):
    """Members (one network per zoom) applied to the frame zoomed by their zoom; forward -> log of the mean
    softmax (so ``softmax(forward(x))`` is the ensemble's probabilities), ``features`` -> the mean features."""

    def __init__(self, members: Sequence[nn.Module], zooms: Sequence[float]) -> None:
        super().__init__()
        self.zooms = check_zooms(zooms)
        if len(members) != len(self.zooms):
            raise SonoshiftError(f"a zoom ensemble needs one network per zoom: {len(members)} for {len(self.zooms)}.")
        self.members = nn.ModuleList(members)

    @property
    def head(self) -> nn.Linear:  # the output size, as PlaneNet exposes it (not a second registered module)
        return self.members[0].head

    @property
    def feature_dim(self) -> int:
        return self.members[0].feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.softmax(m(zoom_tensor(x, z)).float(), 1) for m, z in zip(self.members, self.zooms)])
        return p.mean(0).clamp_min(1e-12).log()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.features(zoom_tensor(x, z)) for m, z in zip(self.members, self.zooms)]).mean(0)


def zoom_ensemble(model: nn.Module, zooms: Sequence[float] = DEFAULT_ZOOMS,
                  adapt: np.ndarray | torch.Tensor | None = None) -> ZoomEnsemble:
    """``model`` (a PlaneNet) at each of ``zooms``; with ``adapt``, unlabelled frames of the new domain (uint8
    (N, S, S) or network inputs (N, 1, S, S) in [-1, 1]), each copy's BatchNorm statistics are re-estimated on
    them zoomed alike (AdaBN per zoom, labels never read)."""
    from sonoshift.judges.plane.adapt import recompute_batchnorm

    zooms = check_zooms(zooms)
    if isinstance(model, ZoomEnsemble):
        raise SonoshiftError("this classifier is already a zoom ensemble: start from the single network.")
    if adapt is None:
        members = [copy.deepcopy(model).eval() for _ in zooms]
    else:
        x = to_input(adapt) if isinstance(adapt, np.ndarray) else adapt
        members = [recompute_batchnorm(model, zoom_tensor(x, z)) for z in zooms]
    return ZoomEnsemble(members, zooms).eval()


__all__ = ["DEFAULT_ZOOMS", "ZoomEnsemble", "check_zooms", "zoom_ensemble", "zoom_tensor"]
