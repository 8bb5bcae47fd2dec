"""Reading frames and label maps from disk, and writing masks, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sonoshift.atomic import atomic_file
from sonoshift.errors import SonoshiftError


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise SonoshiftError(f"image {path} does not exist.")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError) as e:
        raise SonoshiftError(f"image {path} cannot be read ({e.__class__.__name__}).") from None
    return im


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W); colour becomes luminance (ITU-R 601), 16-bit is rejected."""
    path = Path(path)
    im = _open(path)
    if im.mode in ("I;16", "I", "F"):
        raise SonoshiftError(f"image {path} is {im.mode} (not 8-bit); convert it to 8-bit first.")
    return np.asarray(im.convert("L"), dtype=np.uint8)


def read_labels(path: str | Path) -> np.ndarray:
    """A label map (PNG of class ids, or .npy) as uint8 (H, W); an RGB mask keeps its first channel."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise SonoshiftError(f"label map {path} does not exist.")
        a = np.load(path, allow_pickle=False)
    else:
        a = np.asarray(_open(path))
    if a.ndim == 3:
        a = a[..., 0]
    if a.ndim != 2:
        raise SonoshiftError(f"label map {path} must be a (H, W) map, got shape {a.shape}.")
    return a.astype(np.uint8)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W) array as an 8-bit PNG, atomically."""
    with atomic_file(path, "wb") as f:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(f, format="PNG")
