"""Per-image Dice and HD95 between two label maps, one value per foreground class (MONAI underneath).

Conventions (the same for every method, so that tables compare like with like):
- a class absent from both the prediction and the reference gives NaN for Dice and HD95 (left out of means);
- Dice is 2|P∩R| / (|P| + |R|), so a class present in only one of the two scores 0;
- HD95 is the symmetric 95th-percentile Hausdorff distance between the class boundaries, in pixels (or in the
  units of ``spacing``); when the class is present in only one of the two it is the image diagonal, the largest
  distance the image allows, so a missed or hallucinated structure is penalised instead of silently dropped.
If the metrics helper's ``sonoshift.metrics.segmentation`` is present, these stay compatible with its definitions.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch


def _one_hot(label: np.ndarray, num_classes: int) -> torch.Tensor:
    lab = torch.as_tensor(np.asarray(label, dtype=np.int64))
    return torch.nn.functional.one_hot(lab, num_classes).permute(2, 0, 1)[None].float()


def _check(pred: np.ndarray, label: np.ndarray) -> None:
    if np.shape(pred) != np.shape(label) or np.ndim(pred) != 2:
        raise ValueError(f"prediction {np.shape(pred)} and reference {np.shape(label)} must be equal (H, W) maps.")


def dice_per_class(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice in [0, 1] for classes 1..num_classes-1 of two (H, W) integer maps; NaN where both lack the class."""
    from monai.metrics import compute_dice

    _check(pred, label)
    p, r = _one_hot(pred, num_classes), _one_hot(label, num_classes)
    d = compute_dice(p, r, include_background=False, ignore_empty=False)[0].numpy().astype(np.float64)
    present = (p[0, 1:].flatten(1).sum(1) + r[0, 1:].flatten(1).sum(1)).numpy() > 0
    d[~present] = np.nan
    return d


def hd95_per_class(
    pred: np.ndarray, label: np.ndarray, num_classes: int, spacing: float | tuple[float, float] = 1.0
) -> np.ndarray:
    """Symmetric HD95 (pixels x ``spacing``, >= 0) for classes 1..num_classes-1; see the module doc for empties."""
    from monai.metrics import compute_hausdorff_distance

    _check(pred, label)
    sy, sx = (spacing, spacing) if np.isscalar(spacing) else spacing
    h, w = np.shape(label)
    diagonal = math.hypot(h * sy, w * sx)
    out = np.full(num_classes - 1, np.nan)
    pred, label = np.asarray(pred), np.asarray(label)
    for c in range(1, num_classes):
        in_p, in_r = bool((pred == c).any()), bool((label == c).any())
        if in_p and in_r:
            p = torch.as_tensor(pred == c)[None, None].float()
            r = torch.as_tensor(label == c)[None, None].float()
            with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal edge helper argument
                warnings.simplefilter("ignore", FutureWarning)
                d = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=[sy, sx])
            out[c - 1] = float(d[0, 0])
        elif in_p or in_r:
            out[c - 1] = diagonal
    return out
