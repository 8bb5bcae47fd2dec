"""Resize cropped stacks to the prepared square size (letterbox "pad" or "stretch")."""

from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np

from sonoshift.errors import SonoshiftError


@dataclasses.dataclass(frozen=True)
class ResizeConfig:
    """size: output side in pixels (frames are size x size); mode "pad" keeps the aspect ratio (the longer
    side becomes ``size``, the image is centred, the rest is 0 and outside the mask), "stretch" scales each
    axis on its own."""

    size: int = 256
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


def resize_stack(stack: np.ndarray, config: ResizeConfig, *, nearest: bool = False) -> np.ndarray:
    """Resize a (T, h, w) or (h, w) uint8 stack to (T, size, size) / (size, size).

    Images use cv2.INTER_AREA (INTER_LINEAR when enlarging), label maps and masks (``nearest``) INTER_NEAREST;
    padding is 0.
    """
    squeeze = stack.ndim == 2
    st = stack[None] if squeeze else stack
    t, h, w = st.shape
    p = placement(h, w, config)
    s = int(config.size)
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if (p.nh <= h and p.nw <= w) else cv2.INTER_LINEAR
    out = np.zeros((t, s, s), dtype=st.dtype)
    for i in range(t):
        out[i, p.y : p.y + p.nh, p.x : p.x + p.nw] = cv2.resize(st[i], (p.nw, p.nh), interpolation=interp)
    return out[0] if squeeze else out
