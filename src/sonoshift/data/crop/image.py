"""Field of view of a single frame: the sector or rectangle found by its shape and intensity.

The ultrasound image is the large, solid, textured region (flat UI panels, whose rows repeat one value, are
not signal); burned-in text, logos, calipers, depth ticks and grey bars are thin or small and lie in the dark
margins. So: threshold the (median-filtered) frame, close small gaps in the speckle, open with a disk larger
than half a text line (removes strokes and glyph blocks), keep the largest component (and any other large one:
a dark band of fluid can split the image) with holes filled, and take the convex hull (sectors and rectangles
are convex; the hull also restores notches where anechoic fluid touches the sector edge). ``overlay_mask``
then finds text blocks in the corner zones and grey bars at the side edges (``crop_overlay``), which
``find_fov`` cuts out: in zoomed frames the image reaches the corners and edges under them.
"""

from __future__ import annotations

import cv2
import numpy as np

import sonoshift.data.crop.morphology as morph
from sonoshift.data.crop.burned_in import flat_runs, overlay_bar_mask, overlay_text_mask
from sonoshift.data.crop.config import CropConfig


def overlay_mask(frame: np.ndarray, config: CropConfig) -> np.ndarray:
    """Burned-in text blocks and grey bars found directly in a uint8 frame (H, W) -> bool (H, W)."""
    out = np.zeros(frame.shape, bool)
    if config.remove_text:
        out |= overlay_text_mask(frame, config)
    if config.remove_bars:
        out |= overlay_bar_mask(frame, config)
    return out


def image_region_mask(frame: np.ndarray, config: CropConfig) -> np.ndarray:
    """The image region of a uint8 frame (H, W) by shape and intensity alone (overlays on it not removed)."""
    img = cv2.medianBlur(np.ascontiguousarray(frame, dtype=np.uint8), 3)
    # flat runs (identical values along a row) are UI panels and bars, never speckle
    signal = (img > config.signal_threshold) & ~flat_runs(frame, config.bar_run)
    shape = frame.shape
    mask = morph.close(signal, morph.radius_px(config.image_close_radius, shape))
    mask = morph.open_(mask, morph.radius_px(config.open_radius, shape))
    mask = morph.large_filled(mask, config.min_component_fraction * shape[0] * shape[1])
    if config.convex:
        mask = morph.convex_hull(mask)
    return mask
