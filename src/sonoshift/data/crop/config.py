"""The field-of-view crop's settings (``CropConfig``) and result (``CropResult``): plain data, the bottom layer of
the crop package (every other module of it imports this one, this one imports none of them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from sonoshift.config import NonNegInt, PosInt, Range, UnitFloat, Validated


@dataclass(frozen=True)
class CropConfig(Validated):
    """Field-of-view crop settings. Radii are fractions of the shorter frame side; thresholds are gray levels.

    "shape" settings apply to the frame of a single image and to the maximum projection of a video.

    method: "auto" (video method when T > 1, image method when T == 1), "video", "image" or "none" (whole frame).
    video_frames: frames sampled evenly through a video to measure change (the mask is computed once per video).
    change_threshold: a pixel whose range over the sampled frames exceeds this (0..255) is changing.
    signal_threshold: shape: a pixel brighter than this after a 3x3 median is signal.
    close_radius: video: closing radius that joins the changing speckle into one region.
    image_close_radius: shape: closing radius that joins the speckle (small, so text stays apart).
    open_radius: opening radius that removes text strokes, ticks and thin bridges to UI elements.
    min_area_fraction: the field of view must cover at least this fraction of the frame, else an error.
    min_change_fraction: a video whose changing region covers less than this fraction of the frame is treated
        as static: its image is found by shape on the maximum projection (the image method).
    convex: replace the region by its convex hull (sectors and rectangles are convex).
    margin: pixels eroded from the final mask edge (drops the anti-aliased sector border).
    min_component_fraction: shape: besides the largest region, keep regions of at least this fraction of
        the frame (an image split by a dark band of fluid); smaller ones (logos, bars) are dropped.
    remove_text: also cut text blocks found in the corner zones out of the mask (for zoomed
        frames whose image reaches the corners under the vendor text). The ``text_*`` fields tune it:
        zone sizes (fractions of H and W), stroke radius, gap and padding (fractions of the shorter side),
        contrast, minimum level and the dark level a stroke must touch (gray levels), maximum line height
        (fraction of H), minimum stroke pixels and glyphs per block.
    remove_bars: also cut grey bars / swatches at the left and right edges out of the mask: runs
        of ``bar_run`` identical pixels inside the edge bands (``bar_band``, fraction of W) forming a ramp at
        least ``bar_min_height`` (fraction of H) tall.
    """

    method: Literal["auto", "video", "image", "none"] = "auto"
    video_frames: PosInt = 32
    change_threshold: Annotated[int, Range(0, 255)] = 8
    signal_threshold: Annotated[int, Range(0, 255)] = 2
    close_radius: UnitFloat = 0.01
    image_close_radius: UnitFloat = 0.004
    open_radius: UnitFloat = 0.012
    min_area_fraction: UnitFloat = 0.02
    min_change_fraction: UnitFloat = 0.01
    convex: bool = True
    margin: NonNegInt = 1
    min_component_fraction: UnitFloat = 0.03
    remove_text: bool = True
    text_zone_top: UnitFloat = 0.25
    text_zone_bottom: UnitFloat = 0.12
    text_zone_side: UnitFloat = 0.3
    text_stroke_radius: UnitFloat = 0.006
    text_contrast: Annotated[int, Range(0, 255)] = 60
    text_min_level: Annotated[int, Range(0, 255)] = 90
    text_dark_level: Annotated[int, Range(0, 255)] = 40
    text_gap: UnitFloat = 0.008
    text_max_height: UnitFloat = 0.035
    text_pad: UnitFloat = 0.004
    text_min_pixels: NonNegInt = 30
    text_min_glyphs: NonNegInt = 4
    remove_bars: bool = True
    bar_run: PosInt = 5
    bar_band: UnitFloat = 0.08
    bar_min_height: UnitFloat = 0.05


@dataclass(frozen=True)
class CropResult:
    """A field of view.

    mask: bool (h, w), the field of view inside the bounding box.
    bbox: (y0, y1, x0, x1) in the original frame, half-open.
    full_mask: bool (H, W), the mask in the original geometry (for pasting results back).
    method: which method produced it ("video", "image" or "none").
    """

    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    full_mask: np.ndarray
    method: str = "image"


def crop_from_mask(full_mask: np.ndarray, method: str = "image") -> CropResult:
    """Build a CropResult from a bool mask (H, W) with at least one true pixel."""
    full_mask = np.ascontiguousarray(full_mask, dtype=bool)
    rows = np.flatnonzero(full_mask.any(axis=1))
    cols = np.flatnonzero(full_mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("crop_from_mask needs a mask with at least one true pixel")
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return CropResult(full_mask[y0:y1, x0:x1].copy(), (y0, y1, x0, x1), full_mask, method)


__all__ = ["CropConfig", "CropResult", "crop_from_mask"]
