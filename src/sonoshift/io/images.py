"""Gray images: one reader and one writer, used by every stage.

Reading (``read_gray``, ``read_image_pages``): any image PIL opens (PNG, JPEG, BMP, TIFF incl. multi-page) becomes
single-channel uint8. Gray (``L``) is taken as is, 1-bit as 0/255, colour as ITU-R BT.601 luminance
(0.299 R + 0.587 G + 0.114 B, rounded half up; palette, CMYK, YCbCr go through RGB first).

Policy for samples that do not fit 8 bits (one way, everywhere): 16-bit and 32-bit images (``I;16*``, ``I``,
``F``) and images with an alpha channel (RGBA, LA, transparent palettes) are refused with a SonoshiftError that
names the file, because squeezing them into uint8 would lose data silently. Convert them to 8 bits first.

Writing (``write_png``): a uint8 (H, W) array as an 8-bit gray PNG (OpenCV's encoder, zlib level 0-9; colour
(H, W, 3) pictures as RGB PNGs), written to a temporary sibling and renamed unless the caller already writes
into a temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sonoshift.atomic import atomic_write_bytes
from sonoshift.errors import SonoshiftError, short_reason

PNG_LEVEL = 1  # zlib level: fastest; PNG is lossless at every level, so only size and speed change


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB array (..., 3) with values 0..255 -> uint8 (...), rounded half up."""
    r = rgb[..., 0].astype(np.uint32)
    g = rgb[..., 1].astype(np.uint32)
    b = rgb[..., 2].astype(np.uint32)
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).astype(np.uint8)



def pil_to_gray(im: Any, path: str | Path) -> np.ndarray:
    """One PIL image (page) -> uint8 (H, W) under the policy of the module docstring; ``path`` names it in errors."""
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        raise SonoshiftError(
            f"image {path} has an alpha channel ({mode}); save it without transparency (RGB or grayscale)."
        )
    if mode.startswith("I;16") or mode in ("I", "F"):
        raise SonoshiftError(
            f"image {path} has {'16' if mode.startswith('I;16') else '32'}-bit samples ({mode}); "
            "sonoshift reads 8-bit ultrasound only (convert it to 8 bits first)."
        )
    im.load()
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode == "1":
        return np.asarray(im, dtype=np.uint8) * np.uint8(255)
    if mode != "RGB":
        im = im.convert("RGB")  # P (no transparency), CMYK, YCbCr, ...
    return luminance(np.asarray(im))


def read_image_pages(path: str | Path) -> np.ndarray:
    """Every page of an image file as uint8 (T, H, W), C-contiguous; T > 1 only for a multi-page TIFF.

    Raises SonoshiftError naming the file when it is missing or unreadable, when pages differ in size, or for
    16/32-bit or alpha-channel images.
    """
    from PIL import Image, ImageSequence, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"image {path} does not exist.")
    try:
        with Image.open(path) as im:
            pages = [pil_to_gray(page, path) for page in ImageSequence.Iterator(im)]
    except SonoshiftError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise SonoshiftError(f"image {path} cannot be read ({short_reason(e)}).") from None
    shapes = {p.shape for p in pages}
    if len(shapes) != 1:
        raise SonoshiftError(f"image {path} has pages of different sizes {sorted(shapes)}.")
    return np.ascontiguousarray(np.stack(pages))


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W) (its first page), under the policy of the module docstring."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"image {path} does not exist.")
    try:
        with Image.open(path) as im:
            return pil_to_gray(im, path)
    except SonoshiftError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise SonoshiftError(f"image {path} cannot be read ({short_reason(e)}).") from None


def encode_png(image: np.ndarray, level: int = PNG_LEVEL, *, bgr: bool = False) -> bytes:
    """PNG bytes of a gray (H, W) or colour (H, W, 3) image (RGB order, BGR with ``bgr``, as OpenCV draws);
    values must be integers in 0..255 (uint8, bool or any integer type whose values fit: the cast is lossless
    or refused)."""
    a = np.asarray(image)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"write_png takes a gray (H, W) or colour (H, W, 3) image, got shape {a.shape}.")
    if a.dtype != np.uint8:
        if a.dtype != np.bool_ and a.dtype.kind not in "iu":
            raise ValueError(f"write_png takes integer images in 0..255, got dtype {a.dtype}.")
        if a.size and (int(a.min()) < 0 or int(a.max()) > 255):
            raise ValueError(f"write_png takes values in 0..255, got {int(a.min())}..{int(a.max())}.")
        a = a.astype(np.uint8)
    if a.ndim == 3 and not bgr:
        a = a[..., ::-1]  # OpenCV encodes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a), [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise SonoshiftError("an image could not be encoded as PNG.")
    return buf.tobytes()


def write_png(
    path: str | Path, image: np.ndarray, *, level: int = PNG_LEVEL, atomic: bool = True, bgr: bool = False
) -> None:
    """Write a gray uint8 (H, W) image as an 8-bit gray PNG at ``path`` (parent folders are made); a colour
    (H, W, 3) picture (figures, debug pictures) as an 8-bit RGB PNG, given in RGB order or BGR with ``bgr``.

    ``level``: zlib compression 0-9. ``atomic``: write a temporary sibling and rename it (``atomic.py``); False
    writes in place, for callers that already write into a temporary folder renamed when whole (``atomic_dir``).
    """
    path = Path(path)
    data = encode_png(image, level, bgr=bgr)
    path.parent.mkdir(parents=True, exist_ok=True)
    if atomic:
        atomic_write_bytes(path, data)
    else:
        path.write_bytes(data)


__all__ = ["PNG_LEVEL", "encode_png", "luminance", "pil_to_gray", "read_gray", "read_image_pages", "write_png"]
