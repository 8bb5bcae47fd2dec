"""Resize cropped stacks to the prepared square size (letterbox "pad" or "stretch")."""

from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np

from sonoshift.config import PosInt, Validated
from sonoshift.data.crop.config import CropResult
from sonoshift.errors import SonoshiftError


@dataclasses.dataclass(frozen=True)
class ResizeConfig(Validated):
    """size: output side in pixels (frames are size x size); mode "pad" keeps the aspect ratio (the longer
    side becomes ``size``, the image is centred, the rest is 0 and outside the mask), "stretch" scales each
    axis on its own."""

    size: PosInt = 256
    mode: Literal["pad", "stretch"] = "pad"


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a (h, w) image lands in the size x size output: scaled to (nh, nw) at offset (y, x).
    scale_y / scale_x are output pixels per input pixel."""

    nh: int
    nw: int
    y: int
    x: int
    scale_y: float
    scale_x: float


def placement(h: int, w: int, config: ResizeConfig) -> Placement:
    """The placement of an (h, w) image under ``config``."""
    s = int(config.size)
    if s < 8:
        raise SonoshiftError(f"resize.size must be at least 8 pixels, got {config.size}.")
    if h < 1 or w < 1:
        raise SonoshiftError(f"cannot resize an empty {h}x{w} image.")
    if config.mode == "stretch":
        return Placement(s, s, 0, 0, s / h, s / w)
    scale = s / max(h, w)
    nh, nw = max(1, min(s, round(h * scale))), max(1, min(s, round(w * scale)))
    return Placement(nh, nw, (s - nh) // 2, (s - nw) // 2, nh / h, nw / w)


def _interp(h: int, w: int, p: Placement, nearest: bool) -> int:
    if nearest:
        return cv2.INTER_NEAREST
    return cv2.INTER_AREA if (p.nh <= h and p.nw <= w) else cv2.INTER_LINEAR


def _resize_into(src: np.ndarray, dst: np.ndarray, interp: int) -> None:
    """cv2.resize of a 2-D ``src`` written straight into the (possibly strided) view ``dst``."""
    got = cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interp)
    if got is not dst and not np.shares_memory(got, dst):  # a binding that could not write in place
        dst[...] = got


def resize_stack(stack: np.ndarray, config: ResizeConfig, *, nearest: bool = False) -> np.ndarray:
    """Resize a (T, h, w) or (h, w) uint8 stack to (T, size, size) / (size, size).

    Images use cv2.INTER_AREA (INTER_LINEAR when enlarging), label maps and masks (``nearest``) INTER_NEAREST;
    padding is 0. Each frame is resized straight into its place in the output (no intermediate copies).
    """
    squeeze = stack.ndim == 2
    st = stack[None] if squeeze else stack
    t, h, w = st.shape
    p = placement(h, w, config)
    s = int(config.size)
    interp = _interp(h, w, p, nearest)
    out = np.zeros((t, s, s), dtype=st.dtype)
    region = out[:, p.y : p.y + p.nh, p.x : p.x + p.nw]
    for i in range(t):
        _resize_into(st[i], region[i], interp)
    return out[0] if squeeze else out


def crop_resize_stack(frames: np.ndarray, crop: CropResult, config: ResizeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Field-of-view crop and resize of a video in one pass per frame: the prepare hot path.

    frames: uint8 (T, H, W) with (H, W) equal to ``crop.full_mask.shape``.
    Returns (frames uint8 (T, size, size), mask uint8 (size, size) with values 0 / 255). The result equals
    ``resize_stack(apply_crop(frames, crop), config)`` with every pixel outside the resized mask set to 0, and
    the mask equals ``resize_stack(crop.mask * 255, config, nearest=True)``; but each frame is masked in a
    small reused buffer, resized straight into the output and masked again there, so no cropped copy of the
    whole video is made.
    """
    if frames.ndim != 3 or frames.dtype != np.uint8 or frames.shape[1:] != crop.full_mask.shape:
        raise SonoshiftError(
            f"cannot crop and resize an array of {frames.dtype} {frames.shape} with a crop made for "
            f"{crop.full_mask.shape[1]}x{crop.full_mask.shape[0]} uint8 frames."
        )
    y0, y1, x0, x1 = crop.bbox
    inside = crop.mask.astype(np.uint8) * np.uint8(255)  # (h, w) 0 / 255
    h, w = inside.shape
    p = placement(h, w, config)
    s = int(config.size)
    mask = resize_stack(inside, config, nearest=True)
    interp = _interp(h, w, p, nearest=False)
    out = np.zeros((frames.shape[0], s, s), np.uint8)
    region = out[:, p.y : p.y + p.nh, p.x : p.x + p.nw]
    region_mask = mask[p.y : p.y + p.nh, p.x : p.x + p.nw]
    buf = np.empty((h, w), np.uint8)
    for i in range(frames.shape[0]):
        cv2.bitwise_and(frames[i, y0:y1, x0:x1], inside, dst=buf)  # outside the field of view -> 0
        dst = region[i]
        _resize_into(buf, dst, interp)
        cv2.bitwise_and(dst, region_mask, dst=dst)  # area resampling blurs across the mask edge: re-mask
    return out, mask
