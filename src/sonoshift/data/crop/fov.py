"""Field-of-view crop: keep only the ultrasound image, zero everything else, crop to the mask's bounding box.

``find_fov`` computes the mask once per item (video: from temporal change, grown by the shape-based region of
the maximum projection; single image: from shape and intensity; see ``video``, ``image`` and ``burned_in``);
``apply_crop`` applies it to the frames and to any stack
aligned with them (label maps, ground truth); ``save_crop_debug`` draws it for inspection.

Guarantee: a pixel outside the mask is never kept (it is set to ``fill``), so burned-in text that the mask
excludes cannot survive. Known limit: annotations drawn *inside* the image (calipers, measurement labels on the
anatomy) are part of the field of view and stay.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import sonoshift.data.crop.morphology as morph
from sonoshift.data.crop.config import CropConfig, CropResult, crop_from_mask
from sonoshift.data.crop.image import image_region_mask, overlay_mask
from sonoshift.data.crop.video import extend_by_shape, max_projection, video_fov_mask
from sonoshift.errors import SonoshiftError
from sonoshift.io.images import write_png


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
    write_png(path, rgb, bgr=True)


__all__ = ["apply_crop", "find_fov", "save_crop_debug"]
