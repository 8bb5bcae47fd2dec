"""Segmentation agreement: Dice and the 95th-percentile Hausdorff distance (HD95), one value per image and class.

The one implementation used everywhere (the registry in ``sonoshift.metrics``, downstream evaluation, segmenter
training and HC18 validation): Dice by MONAI, HD95 by scipy distance transforms (MONAI's definition, faster). Label maps hold integer class ids; class 0 is background and is
left out, so every result has one column per foreground class 1..num_classes-1.

Conventions, the same for every method so that tables compare like with like:
- Dice is 2|P∩R| / (|P| + |R|), in [0, 1].
- HD95 is the symmetric 95th-percentile Hausdorff distance between the class boundaries (as MONAI: the pixels of the
  class that touch a pixel outside it, the image border counting as outside), in pixels times ``spacing``.
- A class present in only one of prediction and reference (missed or hallucinated) scores Dice 0 and HD95 = the
  image diagonal hypot(H * spacing_y, W * spacing_x), a finite worst case, so means stay finite.
- A class absent from both scores NaN for Dice and HD95: nothing to score, and NaN-skipping means (``np.nanmean``,
  pandas) leave it out instead of counting a frame where a structure is simply not visible as a perfect score.

Two entry points with the same numbers: ``dice``/``hd95`` on batches of tensors (B, H, W) -> (B, num_classes - 1),
and ``dice_per_class``/``hd95_per_class`` on one pair of numpy (H, W) maps -> (num_classes - 1,).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sonoshift.errors import SonoshiftError

Spacing = float | Sequence[float]


def _labels(labels: torch.Tensor, num_classes: int, name: str) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) integer class ids -> (B, H, W) int64, checked to lie in [0, num_classes)."""
    if not isinstance(labels, torch.Tensor):
        raise SonoshiftError(f"{name} must be a torch.Tensor of class ids, got {type(labels).__name__}.")
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 3:
        raise SonoshiftError(f"{name} must be (B, H, W) label maps, got shape {tuple(labels.shape)}.")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise SonoshiftError(f"{name} holds non-integer values; label maps must hold integer class ids.")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise SonoshiftError(f"{name} holds class ids outside [0, {num_classes - 1}].")
    return labels


def _pair(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked one-hot foreground planes of both maps -> two (B, num_classes - 1, H, W) float32 tensors."""
    if num_classes < 2:
        raise SonoshiftError(f"num_classes must be at least 2 (background and one class), got {num_classes}.")
    p, r = _labels(pred, num_classes, "prediction"), _labels(ref, num_classes, "reference")
    if p.shape != r.shape:
        raise SonoshiftError(f"prediction {tuple(p.shape)} and reference {tuple(r.shape)} differ in shape.")
    r = r.to(p.device)

    def hot(x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x, num_classes).permute(0, 3, 1, 2)[:, 1:].float()

    return hot(p), hot(r)


def _spacing_yx(spacing: Spacing) -> tuple[float, float]:
    """A scalar or (row, column) pixel spacing -> (sy, sx), both positive."""
    yx = [float(spacing)] * 2 if np.isscalar(spacing) else [float(s) for s in spacing]
    if len(yx) != 2 or not (yx[0] > 0 and yx[1] > 0):
        raise SonoshiftError(
            f"pixel spacing must be one positive number or a positive (row, column) pair, got {spacing!r}."
        )
    return yx[0], yx[1]


def dice(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice per image and foreground class.

    pred, ref: (B, H, W) or (B, 1, H, W) integer class ids in [0, num_classes). Returns (B, num_classes - 1)
    float64 on pred's device, in [0, 1]: 0 when the class is in only one map, NaN when in neither (module doc).
    """
    from monai.metrics import compute_dice  # imported here: monai takes seconds to import

    p, r = _pair(pred, ref, num_classes)
    # ignore_empty=False: an empty reference gives 1 if the prediction is empty too, else 0; the both-empty
    # case is then set to NaN, our convention.
    d = compute_dice(p, r, include_background=True, ignore_empty=False).double()
    both_empty = (p.flatten(2).amax(-1) == 0) & (r.flatten(2).amax(-1) == 0)
    return d.masked_fill(both_empty, float("nan"))


def hd95(pred: torch.Tensor, ref: torch.Tensor, num_classes: int, spacing: Spacing = 1.0) -> torch.Tensor:
    """Symmetric 95th-percentile Hausdorff distance per image and foreground class.

    pred, ref: (B, H, W) or (B, 1, H, W) integer class ids in [0, num_classes); spacing: pixel size, a scalar or
    (row, column), e.g. mm per pixel. Returns (B, num_classes - 1) float64 on pred's device, >= 0, in pixels times
    ``spacing``: the image diagonal hypot(H * sy, W * sx) when the class is in only one map, NaN when in neither.
    """
    p, r = _pair(pred, ref, num_classes)
    sy, sx = _spacing_yx(spacing)
    h, w = p.shape[-2:]
    in_p, in_r = p.flatten(2).amax(-1) > 0, r.flatten(2).amax(-1) > 0
    out = torch.full(in_p.shape, float("nan"), dtype=torch.float64, device=p.device)
    out[in_p ^ in_r] = math.hypot(h * sy, w * sx)
    both = (in_p & in_r).nonzero().tolist()
    if both:
        pn, rn = p.bool().cpu().numpy(), r.bool().cpu().numpy()
        for b, c in both:
            out[b, c] = _hd95_masks(pn[b, c], rn[b, c], (sy, sx))
    return out


def _hd95_masks(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float]) -> float:
    """HD95 of two non-empty (H, W) boolean masks: boundary pixels (the mask minus its erosion, the image border
    counting as outside), Euclidean distance transforms, the larger of the two directed 95th percentiles.

    The same definition as MONAI's ``compute_hausdorff_distance(percentile=95)`` (tests compare the two); written
    on scipy because MONAI's per-call tensor cropping made HD95 take 53% of the demo's downstream evaluation time
    (`python bench/hd95.py` prints the ratio).
    """
    from scipy import ndimage

    ys, xs = np.nonzero(a | b)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # the union's box with a 1-pixel margin of
    a = np.pad(a[y0:y1, x0:x1], 1)  # outside: crops cannot change the distances between the two boundaries
    b = np.pad(b[y0:y1, x0:x1], 1)
    ea, eb = a & ~ndimage.binary_erosion(a), b & ~ndimage.binary_erosion(b)
    da = ndimage.distance_transform_edt(~eb, sampling=spacing)[ea]
    db = ndimage.distance_transform_edt(~ea, sampling=spacing)[eb]
    return float(max(np.percentile(da, 95), np.percentile(db, 95)))


def _numpy_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Two equal-shape (H, W) numpy label maps -> (1, H, W) tensors."""
    if np.ndim(pred) != 2 or np.shape(pred) != np.shape(ref):
        raise SonoshiftError(
            f"prediction {np.shape(pred)} and reference {np.shape(ref)} must be (H, W) label maps of one shape."
        )
    return torch.as_tensor(np.asarray(pred))[None], torch.as_tensor(np.asarray(ref))[None]


def dice_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """``dice`` for one pair of numpy (H, W) integer label maps -> (num_classes - 1,) float64 in [0, 1] or NaN."""
    return dice(*_numpy_pair(pred, ref), num_classes)[0].cpu().numpy()


def hd95_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int, spacing: Spacing = 1.0) -> np.ndarray:
    """``hd95`` for one pair of numpy (H, W) integer label maps -> (num_classes - 1,) float64, pixels x spacing."""
    return hd95(*_numpy_pair(pred, ref), num_classes, spacing)[0].cpu().numpy()
