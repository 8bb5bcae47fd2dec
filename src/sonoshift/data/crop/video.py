"""Field of view of a video: pixels that never change are overlay; the live image is the large region that does.

The change is the per-pixel range (max - min) over a few frames sampled evenly through the video, so the mask
costs one vectorized pass over those frames whatever the video length. The changing pixels are cleaned with
morphology (close the speckle gaps, keep the largest component with its holes filled, open to cut thin bridges
to blinking UI elements, keep the largest again). The parts of the image that change too little (dark depth,
a probe held still) are recovered from the shape-based region of the maximum projection that touches the
changing region (``extend_by_shape``); the result is optionally replaced by its convex hull.
"""

from __future__ import annotations

import cv2
import numpy as np

import sonoshift.data.crop.morphology as morph
from sonoshift.data.crop.config import CropConfig


def sample_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """``n_samples`` frame indices spread evenly over 0..n_frames-1 (all of them when the video is shorter)."""
    if n_frames <= n_samples:
        return np.arange(n_frames)
    return np.unique(np.linspace(0, n_frames - 1, n_samples).round().astype(int))


def change_range(frames: np.ndarray, n_samples: int) -> np.ndarray:
    """Per-pixel temporal range (max - min) over sampled frames of a uint8 stack (T, H, W) -> uint8 (H, W).

    Running maximum and minimum frame by frame: no copy of the sampled frames is made.
    """
    idx = sample_indices(frames.shape[0], n_samples)
    hi = frames[idx[0]].copy()
    lo = hi.copy()
    for i in idx[1:]:
        np.maximum(hi, frames[i], out=hi)
        np.minimum(lo, frames[i], out=lo)
    return hi - lo


def max_projection(frames: np.ndarray, n_samples: int) -> np.ndarray:
    """Per-pixel maximum over sampled frames of a uint8 stack (T, H, W) -> uint8 (H, W) (running maximum)."""
    idx = sample_indices(frames.shape[0], n_samples)
    hi = frames[idx[0]].copy()
    for i in idx[1:]:
        np.maximum(hi, frames[i], out=hi)
    return hi


def extend_by_shape(changing: np.ndarray, region: np.ndarray, convex: bool) -> np.ndarray:
    """Grow the changing region by the parts of the shape-based ``region`` (bool masks (H, W)) that touch it.

    Dark or slowly changing parts of the live image (deep, anechoic) change too little to pass the change
    threshold but belong to the same sector or rectangle found by shape on the maximum projection.
    """
    n, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    touching = np.unique(labels[changing & region])
    mask = changing | np.isin(labels, touching[touching > 0])
    return morph.convex_hull(mask) if convex else mask


def video_fov_mask(frames: np.ndarray, config: CropConfig) -> np.ndarray:
    """Field-of-view mask of a uint8 stack (T, H, W), T >= 2 -> bool (H, W); all False when nothing changes."""
    shape = frames.shape[1:]
    changing = change_range(frames, config.video_frames) > config.change_threshold
    mask = morph.close(changing, morph.radius_px(config.close_radius, shape))
    mask = morph.largest_filled(mask)
    mask = morph.open_(mask, morph.radius_px(config.open_radius, shape))
    mask = morph.largest_filled(mask)
    if config.convex:
        mask = morph.convex_hull(mask)
    return mask
