"""Head-centred square crops: the second, finer look of the GA estimator at a head the first stage has found.

The first stage sees the whole frame squeezed into the model size, so a small first-trimester head covers a few
dozen model pixels and a mid-pregnancy head about half of them. A crop centred on the first stage's ellipse, with
side ``margin`` x its long axis, shows every head at about the same size in the model (the head's outline then lies
near the same model radius whatever the gestational age): more model pixels per millimetre of skull for small and
mid-size heads, and one scale for the refining network to learn. The crop is a native-pixel square (no
stretching), zero outside the frame.

A box is (x0, y0, side) in integer native pixels: model pixel centre j in [0, S) sits at native pixel coordinate
x0 + (j + 0.5) side / S - 0.5 (pixel centres at integers), the same convention as the whole-frame map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from sonoshift.downstream.ellipse import fit_ellipse

Box = tuple[int, int, int]


def crop_box(cx: float, cy: float, a: float, margin: float) -> Box:
    """The square (x0, y0, side) in native pixels centred on (cx, cy) with side ``2 margin a`` (at least 8)."""
    side = max(8, int(round(2 * margin * a)))
    return int(round(cx - side / 2 + 0.5)), int(round(cy - side / 2 + 0.5)), side


def window(img: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The (h, w) pixels of ``img`` (H, W) from column ``x0`` and row ``y0`` on, zero where they leave the image."""
    out = np.zeros((h, w), img.dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, img.shape[1]), min(y0 + h, img.shape[0])
    if xb > xa and yb > ya:
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = img[ya:yb, xa:xb]
    return out


def _cut(img: np.ndarray, box: Box) -> np.ndarray:
    """The box's native pixels of ``img`` (H, W), zero where the box leaves the image."""
    x0, y0, side = box
    return window(img, x0, y0, side, side)


def crop_input(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """uint8 (H, W) frame -> the box resized to (size, size) float32 in [-1, 1] (INTER_AREA; outside the frame -1)."""
    r = cv2.resize(_cut(np.asarray(frame), box), (size, size), interpolation=cv2.INTER_AREA)
    return r.astype(np.float32) / 127.5 - 1.0


def crop_labels(mask: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Binary (H, W) mask -> the box at (size, size) int64 labels (area share above one half)."""
    r = cv2.resize(_cut(np.asarray(mask).astype(np.float32), box), (size, size), interpolation=cv2.INTER_AREA)
    return (r > 0.5).astype(np.int64)


def training_crops(
    frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], size: int, per_image: int | Sequence[int],
    margin: tuple[float, float], shift: float, generator: torch.Generator,
    ref_masks: Sequence[np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_image`` random head crops of each (frame, reference mask) pair (one count for all, or one per image):
    (N, 1, S, S) in [-1, 1] and (N, S, S) labels. Each crop's side is 2 m a (m uniform in ``margin``, a the
    reference ellipse's long semi-axis) and its centre is moved by up to ``shift`` x side on each axis, so the
    network learns heads placed and sized as a first stage that is a little off would place them. ``ref_masks``:
    the masks the reference ellipses are fitted to, where they differ from the label masks (a head cut by the
    border is placed by its whole mask and labelled by its visible part)."""
    counts = [per_image] * len(frames) if isinstance(per_image, int) else list(per_image)
    if len(counts) != len(frames):
        raise ValueError(f"per_image has {len(counts)} counts for {len(frames)} frames.")
    xs, ys = [], []
    refs = masks if ref_masks is None else ref_masks
    if len(refs) != len(frames):
        raise ValueError(f"ref_masks has {len(refs)} masks for {len(frames)} frames.")
    for f, m, r, k in zip(frames, masks, refs, counts):
        ref = fit_ellipse(np.asarray(r) > 0)
        if ref is None:
            continue
        for _ in range(k):
            u = torch.rand(3, generator=generator).tolist()
            mar = margin[0] + u[0] * (margin[1] - margin[0])
            side = 2 * mar * ref.a
            box = crop_box(ref.cx + (2 * u[1] - 1) * shift * side, ref.cy + (2 * u[2] - 1) * shift * side, ref.a, mar)
            xs.append(crop_input(f, box, size))
            ys.append(crop_labels(m, box, size))
    if not xs:
        return torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long)
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys))


def size_balanced_counts(hc_mm: Sequence[float], per_image: int, balance: float, bandwidth_mm: float = 25.0
                         ) -> list[int]:
    """Crops per training image so that rare head sizes are seen about as often as common ones: ``per_image`` x
    w_i, w_i = density(HC_i)^-balance normalized to mean 1 (Gaussian kernel density of the head circumference over
    the training images, ``bandwidth_mm`` wide), at least one crop each; ``balance`` 0 gives ``per_image`` for all.
    On HC18 (most heads 150-200 mm) balance 1 gives the heads above 250 mm (third trimester) 2.3x the crops."""
    v = np.asarray(hc_mm, float)
    if balance <= 0 or len(v) < 2:
        return [per_image] * len(v)
    dens = np.exp(-0.5 * ((v[:, None] - v[None, :]) / bandwidth_mm) ** 2).mean(axis=1)
    w = dens ** -balance
    w /= w.mean()
    return [max(1, int(round(per_image * x))) for x in w]


def box_to_native(rows: np.ndarray, cols: np.ndarray, box: Box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-pixel coordinates (row, col) of a crop map -> native (x, y) pixel coordinates."""
    x0, y0, side = box
    k = side / size
    return x0 + (cols + 0.5) * k - 0.5, y0 + (rows + 0.5) * k - 0.5


def native_margin(box: Box, size: int) -> float:
    """Native pixels per model pixel of the crop."""
    return box[2] / size if box else math.nan
