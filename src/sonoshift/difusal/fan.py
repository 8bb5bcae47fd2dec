"""The ultrasound fan of generated images (pure torch).

Real frames are zero (-1 in network range) outside the scanner's fan: prepare's field-of-view crop masks them.
The generator leaves faint speckle there, which the intensity-histogram realism check rejects and the
downstream models would learn as a "synthetic" cue. So every generated image is masked by a fan of the regime's
real training frames before it is scored, kept or trained on: one mask per real training video (the crop and
pose differ per video), and each image takes the mask that best separates its bright inside from its dark
outside.
"""

from __future__ import annotations

import numpy as np
import torch

from sonoshift.difusal.data import Frames

# a pixel is "on" in a real frame when it is above black (uint8 0 -> -1.0; 1 -> -0.992)
ON_LEVEL = -0.995


def fan_masks(frames: Frames) -> torch.Tensor:
    """One boolean mask (V, S, S) per video of ``frames`` (all frames as one video when videos is None): the
    pixels that are on in at least half of that video's frames."""
    groups = frames.videos if frames.videos is not None else np.zeros(len(frames), dtype=object)
    on = frames.x[:, 0] > ON_LEVEL
    return torch.stack([on[torch.from_numpy(np.flatnonzero(groups == g))].float().mean(0) >= 0.5
                        for g in np.unique(groups)])


def best_mask(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Index (N,) of the mask in ``masks`` (V, S, S) that maximises mean brightness inside minus mean brightness
    outside for each image of ``x`` (N, 1, S, S) in [-1, 1]."""
    b = ((x[:, 0] + 1) / 2).flatten(1)  # (N, P)
    m = masks.flatten(1).float()  # (V, P)
    inside = (b @ m.T) / m.sum(1).clamp_min(1)
    outside = (b @ (1 - m).T) / (1 - m).sum(1).clamp_min(1)
    return (inside - outside).argmax(1)


def apply_fan(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x`` (N, 1, S, S) with every pixel outside its best-matching fan set to -1 (black)."""
    if x.shape[0] == 0:
        return x
    keep = masks[best_mask(x, masks)].unsqueeze(1)
    return torch.where(keep, x, torch.full_like(x, -1.0))


__all__ = ["apply_fan", "best_mask", "fan_masks"]
