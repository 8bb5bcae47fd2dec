"""Segmentation agreement through MONAI: Dice and the 95th-percentile Hausdorff distance (HD95), per image.

Label maps are integer class ids (B, H, W) or (B, 1, H, W); class 0 is background and is left out. A class absent
from both maps gets Dice NaN (nothing to score) and HD95 NaN; absent from exactly one, Dice 0 and HD95 inf.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from sonoshift.errors import SonoshiftError


def _one_hot(labels: torch.Tensor, num_classes: int, name: str) -> torch.Tensor:
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 3:
        raise SonoshiftError(f"{name} must be (B, H, W) label maps, got shape {tuple(labels.shape)}.")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise SonoshiftError(f"{name} holds class ids outside [0, {num_classes - 1}].")
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def dice(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice per image and foreground class -> (B, num_classes - 1) float64 in [0, 1] (NaN: class in neither)."""
    from monai.metrics import compute_dice  # imported here: monai takes seconds to import

    p, r = _one_hot(pred, num_classes, "prediction"), _one_hot(ref, num_classes, "reference")
    return compute_dice(p, r, include_background=False, ignore_empty=True).double()


def hd95(pred: torch.Tensor, ref: torch.Tensor, num_classes: int, spacing: float = 1.0) -> torch.Tensor:
    """95th-percentile symmetric Hausdorff distance per image and foreground class -> (B, num_classes - 1),
    in pixels times ``spacing`` (e.g. mm per pixel)."""
    from monai.metrics import compute_hausdorff_distance

    p, r = _one_hot(pred, num_classes, "prediction"), _one_hot(ref, num_classes, "reference")
    with warnings.catch_warnings():  # empty classes are handled below, MONAI's per-class warnings are noise
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        out = compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=spacing)
    out = out.double()
    pe, re_ = p[:, 1:].flatten(2).sum(-1) > 0, r[:, 1:].flatten(2).sum(-1) > 0
    out = torch.where(pe & re_, out, torch.full_like(out, float("inf")))
    return torch.where(~pe & ~re_, torch.full_like(out, float("nan")), out)
