"""Packed cache: one memory-mapped uint8 array per split and domain, so training never decodes PNGs per step.

Layout (docs/formats.md section 2): ``cache/<split>/<domain>.npy`` (N, H, W) frames in manifest order for that
domain, ``cache/<split>/<domain>.mask.npy`` the field-of-view masks (0/255), and
``cache/<split>/<domain>.<aligned name>.npy`` each aligned stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoshift.errors import SonoshiftError


def cache_path(root: str | Path, split: str, domain: str, kind: str | None = None) -> Path:
    """Path of one packed array; ``kind`` None is the frames, "mask" the masks, else an aligned stack name."""
    name = f"{domain}.npy" if kind is None else f"{domain}.{kind}.npy"
    return Path(root) / "cache" / split / name


def create_cache(path: str | Path, n: int, height: int, width: int) -> np.memmap:
    """A new writable (n, height, width) uint8 ``.npy`` memory map at ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(int(n), int(height), int(width)))


def load_cache(root: str | Path, split: str, domain: str, kind: str | None = None) -> np.ndarray:
    """The packed (N, H, W) uint8 array, memory-mapped read-only; raises SonoshiftError when it is missing."""
    path = cache_path(root, split, domain, kind)
    if not path.is_file():
        raise SonoshiftError(
            f"packed cache {path} does not exist (is {root} a prepared dataset holding domain {domain!r} in split {split!r}?)."
        )
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise SonoshiftError(f"packed cache {path} is unreadable ({e.__class__.__name__}).") from None
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise SonoshiftError(f"packed cache {path} must be a uint8 (N, H, W) array, got {arr.dtype} {arr.shape}.")
    return arr


def has_cache(root: str | Path, split: str, domain: str, kind: str | None = None) -> bool:
    """True when the packed array exists."""
    return cache_path(root, split, domain, kind).is_file()


def load_fov(root: str | Path, split: str, domain: str) -> np.ndarray:
    """The field of view of a packed domain, memory-mapped: its masks (0/255), or, for a domain packed without
    masks, its frames (non-black pixels). Either way the field of view is where the array is > 0."""
    return load_cache(root, split, domain, "mask" if has_cache(root, split, domain, "mask") else None)
