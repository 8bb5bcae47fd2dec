"""Dice + cross-entropy with extra weight on the pixels near a label boundary.

The GA estimator measures a head by the 0.5 iso-contour of its probability map, so what matters is where the map
crosses one half, not the interior: every pixel within ``width`` pixels of a boundary of the label map (a pixel
whose (2 width + 1)-square neighbourhood holds another class) gets cross-entropy weight ``1 + weight``, the rest 1;
the Dice term is MONAI's (softmax, one-hot labels), as in the plain loss. ``weight`` 0 is the plain Dice +
cross-entropy (``monai.losses.DiceCELoss`` with its defaults: both terms summed, CE averaged over pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def boundary_band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, H, W) bool: pixels within ``width`` (Chebyshev distance) of a pixel of
    another class."""
    y = labels[:, None].float()
    k = 2 * width + 1
    hi = F.max_pool2d(y, k, stride=1, padding=width)
    lo = -F.max_pool2d(-y, k, stride=1, padding=width)
    # max_pool pads with -inf, so the frame edge is not a boundary
    return (hi != lo)[:, 0]


class BoundaryDiceCELoss(torch.nn.Module):
    """Dice + boundary-weighted cross-entropy for logits (B, C, H, W) and labels (B, 1, H, W) (DiceCELoss's call)."""

    def __init__(self, weight: float = 0.0, width: int = 2) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.weight, self.width = float(weight), int(width)
        self.dice = DiceLoss(to_onehot_y=True, softmax=True)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = labels[:, 0].long()
        ce = F.cross_entropy(logits, y, reduction="none")
        if self.weight:
            ce = ce * (1.0 + self.weight * boundary_band(y, self.width).to(ce.dtype))
        return self.dice(logits, labels) + ce.mean()
