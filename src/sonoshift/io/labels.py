"""Label maps (class ids per pixel): one reader and one writer.

A label map is a uint8 (H, W) array of class ids (0 = background). On disk it is an 8-bit PNG holding the ids as
they are (no colour conversion, no scaling) or a ``.npy`` array. A colour PNG (an annotation tool's RGB mask)
keeps its first channel. 16-bit PNGs and arrays with ids outside 0..255 are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoshift.errors import SonoshiftError
from sonoshift.io.images import PNG_LEVEL, write_png


def read_labels(path: str | Path) -> np.ndarray:
    """A label map (PNG of class ids, or .npy) as uint8 (H, W); an RGB(A) mask keeps its first channel."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"label map {path} does not exist.")
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise SonoshiftError(f"label map {path} cannot be read ({e.__class__.__name__}).") from None
    else:
        try:
            with Image.open(path) as im:
                if im.mode.startswith("I;16") or im.mode in ("I", "F"):
                    raise SonoshiftError(f"label map {path} is {im.mode} (not 8-bit); save class ids as 8-bit.")
                a = np.asarray(im)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise SonoshiftError(f"label map {path} cannot be read ({e.__class__.__name__}).") from None
    if a.ndim == 3:
        a = a[..., 0]
    if a.ndim != 2:
        raise SonoshiftError(f"label map {path} must be a (H, W) map, got shape {a.shape}.")
    if a.dtype != np.uint8:
        if a.dtype != np.bool_ and a.dtype.kind not in "iu":
            raise SonoshiftError(f"label map {path} has dtype {a.dtype}; class ids must be integers.")
        if a.size and (int(a.min()) < 0 or int(a.max()) > 255):
            raise SonoshiftError(f"label map {path} has class ids {int(a.min())}..{int(a.max())}, outside 0..255.")
    return np.ascontiguousarray(a, dtype=np.uint8)


def write_labels(path: str | Path, labels: np.ndarray, *, level: int = PNG_LEVEL, atomic: bool = True) -> None:
    """Write class ids (H, W) in 0..255 as an 8-bit PNG (the ids as they are); see ``io.images.write_png``."""
    write_png(path, labels, level=level, atomic=atomic)


__all__ = ["read_labels", "write_labels"]
