"""Field-of-view crop: keep only the ultrasound image, zero everything else, crop to the mask's bounding box.

``find_fov`` computes the mask once per item (video: from temporal change, grown by the shape-based region of
the maximum projection; single image: from shape and intensity; see ``crop_video``, ``crop_image`` and
``crop_overlay``); ``apply_crop`` applies it to the frames and to any stack
aligned with them (label maps, ground truth); ``save_crop_debug`` draws it for inspection.

Guarantee: a pixel outside the mask is never kept (it is set to ``fill``), so burned-in text that the mask
excludes cannot survive. Known limit: annotations drawn *inside* the image (calipers, measurement labels on the
anatomy) are part of the field of view and stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np

from sonoshift.atomic import atomic_write_bytes
from sonoshift.config import NonNegInt, PosInt, Range, UnitFloat, Validated
from sonoshift.data import morphology as morph
from sonoshift.data.crop_image import image_region_mask, overlay_mask
from sonoshift.data.crop_video import change_range, extend_by_shape, max_projection, video_fov_mask
from sonoshift.errors import SonoshiftError


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


def find_fov(
    frames: np.ndarray, *, config: CropConfig | None = None, name: str | Path | None = None,
    hint: str = "use crop.method=none to keep whole frames",
) -> CropResult:
    """Find the ultrasound field of view of an item.

    frames: uint8 (T, H, W) or (H, W). T > 1 uses the temporal-change method (grown by the shape-based region
    of the maximum projection that touches it), T == 1 the single-image method (``config.method`` can force
    either, or "none" for the whole frame). Text blocks and grey bars found on the (projected) frame are cut
    out in both cases.
    name: the item's file, used only in error messages; hint: how the caller's user keeps whole frames.
    Returns a CropResult. Raises SonoshiftError when no field of view of at least ``min_area_fraction`` of the
    frame is found (e.g. a blank frame).
    """
    cfg = config or CropConfig()
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    label = str(name) if name is not None else "the input"
    if frames.ndim != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise SonoshiftError(
            f"{label}: field-of-view crop needs uint8 frames (T, H, W), got {frames.dtype} {frames.shape}."
        )
    shape = frames.shape[1:]
    if cfg.method == "none":
        return crop_from_mask(np.ones(shape, bool), "none")
    area = shape[0] * shape[1]
    use_video = cfg.method == "video" or (cfg.method == "auto" and frames.shape[0] > 1)
    still = frames[0] if frames.shape[0] == 1 else max_projection(frames, cfg.video_frames)
    region = image_region_mask(still, cfg)
    method = "image"
    if use_video and frames.shape[0] > 1:
        changing = video_fov_mask(frames, cfg)
        if changing.sum() >= cfg.min_change_fraction * area:
            region, method = extend_by_shape(changing, region, cfg.convex), "video"
        # else: a (nearly) static stack: the image is found by shape on its maximum projection
    mask = region & ~overlay_mask(still, cfg)
    mask = morph.erode(mask, cfg.margin)
    if mask.sum() < max(cfg.min_area_fraction * area, 1):
        raise SonoshiftError(
            f"{label}: no ultrasound field of view covering {cfg.min_area_fraction:.0%} of the frame was found "
            f"(blank or overlay-only frames?); {hint}."
        )
    return crop_from_mask(mask, method)


def apply_crop(frames: np.ndarray, crop: CropResult, *, fill: int = 0) -> np.ndarray:
    """Mask and crop a stack aligned with the crop's frame.

    frames: (T, H, W, ...) array of any dtype (or one frame (H, W)), (H, W) equal to ``crop.full_mask.shape``.
    Returns a new array (T, h, w, ...) (or (h, w)) with pixels outside the mask set to ``fill``.
    """
    frames = np.asarray(frames)
    single = frames.ndim == 2
    stack = frames[None] if single else frames
    if stack.shape[1:3] != crop.full_mask.shape:
        raise SonoshiftError(
            f"cannot apply a crop made for {crop.full_mask.shape[1]}x{crop.full_mask.shape[0]} frames to an array "
            f"of shape {frames.shape}."
        )
    y0, y1, x0, x1 = crop.bbox
    view = stack[:, y0:y1, x0:x1]
    inside = crop.mask.reshape(crop.mask.shape + (1,) * (view.ndim - 3))
    if fill == 0:
        out = (view * inside).astype(view.dtype, copy=False)  # one pass, broadcast over frames
    else:
        out = view.copy()
        np.copyto(out, np.asarray(fill, dtype=out.dtype), where=~inside)
    return out[0] if single else out


def save_crop_debug(frame: np.ndarray, crop: CropResult, path: str | Path) -> None:
    """Write a PNG of ``frame`` (uint8 (H, W) or (1, H, W)) with the mask outline (green) and bbox (red)."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[0] == 1:
        frame = frame[0]
    if frame.shape != crop.full_mask.shape:
        raise SonoshiftError(
            f"debug picture {path}: frame {frame.shape} does not match the crop {crop.full_mask.shape}."
        )
    rgb = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(crop.full_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thick = max(1, min(frame.shape) // 300)
    cv2.drawContours(rgb, contours, -1, (0, 255, 0), thick)
    y0, y1, x0, x1 = crop.bbox
    cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 255), thick)
    ok, buf = cv2.imencode(".png", rgb)
    if not ok:
        raise SonoshiftError(f"debug picture {path} could not be encoded as PNG.")
    atomic_write_bytes(path, buf.tobytes())


__all__ = ["CropConfig", "CropResult", "apply_crop", "change_range", "crop_from_mask", "find_fov", "save_crop_debug"]
