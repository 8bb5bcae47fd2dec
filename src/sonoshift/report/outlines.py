"""Outlines on a grey frame: the ground-truth label map on the inside edge of each class, a segmenter's prediction
just outside each predicted region, so a prediction that matches the truth shows as two parallel lines."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import find_boundaries

# Ground-truth label colours (class 1, 2, ...), RGB in [0, 1].
LABEL_COLORS = np.array(
    [[0.95, 0.25, 0.2], [0.2, 0.8, 0.3], [0.25, 0.55, 1.0], [1.0, 0.8, 0.1], [0.85, 0.3, 0.9], [0.1, 0.9, 0.9]]
)
# When predictions are drawn too, every ground-truth class is outlined in this one colour (cyan) ...
GT_COLOR = np.array([0.0, 0.85, 1.0])
# ... and predicted classes (1, 2, ...) in warm / green colours that are not cyan.
PRED_COLORS = np.array([[1.0, 0.1, 0.1], [1.0, 0.85, 0.0], [1.0, 0.3, 1.0], [0.3, 1.0, 0.2], [1.0, 0.55, 0.0]])


def upsample(a: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a (H, W) array by an integer ``scale`` >= 1 -> (H*scale, W*scale)."""
    return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1) if scale > 1 else a


def _fit(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label map resized (nearest) to ``shape`` when its size differs from the frame's."""
    if labels.shape == shape[:2]:
        return labels
    return cv2.resize(labels.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def draw_outlines(
    gray: np.ndarray,
    labels: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    scale: int = 1,
    label_color: np.ndarray | None = None,
) -> np.ndarray:
    """Outline label maps on a frame.

    ``gray``: uint8 (H, W) frame. ``labels``: ground-truth class ids (H, W) or None; each class k > 0 is outlined
    on the inner edge of its region, in ``LABEL_COLORS[k-1]`` or, when given, ``label_color`` for every class.
    ``pred``: predicted class ids (H, W) or None; each class k > 0 is outlined on the outer edge of its region
    (the background pixels touching it) in ``PRED_COLORS[k-1]``, drawn last. Maps of another size are resized
    (nearest) to the frame. Everything is upsampled by the integer ``scale`` (nearest) before the edges are found,
    so lines stay one output pixel wide. Returns RGB float (H*scale, W*scale, 3) in [0, 1].
    """
    rgb = np.repeat(upsample(gray, scale)[..., None].astype(np.float64) / 255, 3, axis=2)
    for maps, mode, colors in ((labels, "inner", LABEL_COLORS), (pred, "outer", PRED_COLORS)):
        if maps is None:
            continue
        up = upsample(_fit(maps, gray.shape), scale)
        for k in np.unique(up):
            if k == 0:
                continue
            edge = find_boundaries(up == k, mode=mode)
            use_single = label_color is not None and mode == "inner"
            rgb[edge] = label_color if use_single else colors[(int(k) - 1) % len(colors)]
    return rgb
