"""Outlines on a grey frame: the ground-truth label map on the inside edge of each class, a segmenter's prediction
just outside each predicted region, so a prediction that matches the truth shows as two parallel lines.

Colours come from the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), and every
line gets a one-pixel dark halo so it stays visible on bright speckle as well as on the black background."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import binary_dilation
from skimage.segmentation import find_boundaries


def _rgb(*hexes: str) -> np.ndarray:
    return np.array([[int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)] for h in hexes])


# Okabe & Ito (2008) colour-blind safe palette, RGB in [0, 1] (black left out: it is the halo).
OKABE_ITO = _rgb("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
# Ground-truth label colours (class 1, 2, ...) when no prediction is drawn.
LABEL_COLORS = OKABE_ITO
# When predictions are drawn too, every ground-truth class is outlined in this one colour (sky blue) ...
GT_COLOR = OKABE_ITO[1]
# ... and predicted classes (1, 2, ...) in the palette's other colours, none of them blue.
PRED_COLORS = _rgb("#E69F00", "#CC79A7", "#F0E442", "#D55E00", "#009E73")
HALO_COLOR = np.zeros(3)


def upsample(a: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a (H, W) array by an integer ``scale`` >= 1 -> (H*scale, W*scale)."""
    return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1) if scale > 1 else a


def _fit(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label map resized (nearest) to ``shape`` when its size differs from the frame's."""
    if labels.shape == shape[:2]:
        return labels
    return cv2.resize(labels.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _edge(region: np.ndarray, mode: str, width: int) -> np.ndarray:
    """The ``width``-pixel band just inside (``inner``) or just outside (``outer``) a boolean region."""
    edge = find_boundaries(region, mode=mode)
    if width > 1:
        cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
        band = binary_dilation(edge, cross, iterations=width - 1)
        edge |= band & (region if mode == "inner" else ~region)
    return edge


def draw_outlines(
    gray: np.ndarray,
    labels: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    scale: int = 1,
    label_color: np.ndarray | None = None,
    halo: bool = True,
    line_px: int = 1,
) -> np.ndarray:
    """Outline label maps on a frame.

    ``gray``: uint8 (H, W) frame. ``labels``: ground-truth class ids (H, W) or None; each class k > 0 is outlined
    on the inner edge of its region, in ``LABEL_COLORS[k-1]`` or, when given, ``label_color`` for every class.
    ``pred``: predicted class ids (H, W) or None; each class k > 0 is outlined on the outer edge of its region
    (the background pixels touching it) in ``PRED_COLORS[k-1]``, drawn last. Maps of another size are resized
    (nearest) to the frame. Everything is upsampled by the integer ``scale`` (nearest) before the edges are found,
    so lines are ``line_px`` output pixels wide (inner lines grow inward, outer lines outward). With ``halo`` the pixels next to any line (8-neighbourhood) that are not
    themselves on a line turn black first. Returns RGB float (H*scale, W*scale, 3) in [0, 1].
    """
    rgb = np.repeat(upsample(gray, scale)[..., None].astype(np.float64) / 255, 3, axis=2)
    lines: list[tuple[np.ndarray, np.ndarray]] = []  # (edge mask, colour) in drawing order
    for maps, mode, colors in ((labels, "inner", LABEL_COLORS), (pred, "outer", PRED_COLORS)):
        if maps is None:
            continue
        up = upsample(_fit(maps, gray.shape), scale)
        for k in np.unique(up):
            if k == 0:
                continue
            edge = _edge(up == k, mode, line_px)
            use_single = label_color is not None and mode == "inner"
            lines.append((edge, label_color if use_single else colors[(int(k) - 1) % len(colors)]))
    if halo and lines:
        on_line = np.logical_or.reduce([e for e, _ in lines])
        rgb[binary_dilation(on_line, np.ones((3, 3), bool)) & ~on_line] = HALO_COLOR
    for edge, color in lines:
        rgb[edge] = color
    return rgb
