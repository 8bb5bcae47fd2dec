"""Loose frames to predict on (`classify predict`, `classify adapt`, `ga predict`, `segment predict`, `synth --init`):
image files, DICOM stills and DICOM cine loops, given directly or found in folders, one :class:`FrameRef` per frame;
and the pixel size a DICOM states about itself.

A clinic's frames usually come as DICOM: a still is one frame, a cine loop (a handheld sweep) one frame per row of
the prediction table. Images and DICOMs are read under the readers' policy (``data/readers.py``: 8-bit only,
colour to luminance, MONOCHROME1 inverted; one sentence naming the file otherwise).

Pixel size (``dicom_pixel_size_mm``): the ultrasound region calibration (Sequence of Ultrasound Regions, PS3.3
C.8.5.5: PhysicalDeltaX / Y in cm per pixel when the physical units are cm, code 3) of the largest 2D tissue region,
else Pixel Spacing (mm, row then column). Pixels that are not square are refused: an ellipse's perimeter in mm
needs one size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonoshift.errors import SonoshiftError, short_reason
from sonoshift.io.suffixes import DICOM_SUFFIXES, IMAGE_SUFFIXES

FRAME_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES
CM = 3  # DICOM physical units code for centimetres
SQUARE_TOLERANCE = 0.01  # relative difference of the x and y pixel sizes still read as one size


@dataclass(frozen=True)
class FrameRef:
    """One frame of an input file: ``index`` None for an image file or a one-frame DICOM, else the frame of a
    cine loop (0-based)."""

    path: Path
    index: int | None = None

    @property
    def is_dicom(self) -> bool:
        from sonoshift.data.readers import is_dicom_input

        return is_dicom_input(self.path)

    def __str__(self) -> str:
        return str(self.path) if self.index is None else f"{self.path}#{self.index}"


def _header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as e:  # pydicom raises many types for malformed files
        raise SonoshiftError(f"DICOM {path} cannot be read ({short_reason(e)}).") from None


def _refs(path: Path) -> list[FrameRef]:
    if not FrameRef(path).is_dicom:
        return [FrameRef(path)]
    n = int(_header(path).get("NumberOfFrames", 1) or 1)
    return [FrameRef(path)] if n <= 1 else [FrameRef(path, k) for k in range(n)]


def list_frames(paths: Sequence[str | Path], *, recursive: bool = False) -> list[FrameRef]:
    """The frames of the given files and of the image / DICOM files in the given folders (sorted; sub-folders too
    with ``recursive``); a file given directly is taken whatever its suffix (a DICOM without one is recognised by
    its preamble). Raises for a missing path or when nothing is found."""
    refs: list[FrameRef] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            files = sorted(q for q in found if q.is_file() and q.suffix.lower() in FRAME_SUFFIXES)
        elif p.is_file():
            files = [p]
        else:
            raise SonoshiftError(f"input {p} does not exist.")
        for f in files:
            refs += _refs(f)
    if not refs:
        raise SonoshiftError("no image or DICOM files were found in the given paths.")
    return refs


class _LastStacks:
    """The last few DICOMs decoded: a cine loop is read once for all its frames, also when several threads (the
    GA estimator's lanes) read the frames of neighbouring loops at the same time."""

    def __init__(self, keep: int = 3) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._stacks: OrderedDict[Path, np.ndarray] = OrderedDict()

    def frames(self, path: Path) -> np.ndarray:
        from sonoshift.data.readers import read_stack

        with self._lock:
            if path not in self._stacks:
                self._stacks[path] = read_stack(path).frames
                while len(self._stacks) > self._keep:
                    self._stacks.popitem(last=False)
            self._stacks.move_to_end(path)
            return self._stacks[path]


_LAST = _LastStacks()


def read_frame(ref: FrameRef | str | Path) -> np.ndarray:
    """One frame as uint8 (H, W): an image file (its first page) or a DICOM frame."""
    from sonoshift.io.images import read_gray

    ref = ref if isinstance(ref, FrameRef) else FrameRef(Path(ref))
    if not ref.is_dicom:
        return read_gray(ref.path)
    frames = _LAST.frames(ref.path)
    k = 0 if ref.index is None else ref.index
    if not 0 <= k < len(frames):
        raise SonoshiftError(f"DICOM {ref.path} has {len(frames)} frame(s); frame {k} does not exist.")
    return frames[k]


def pixel_sizes(refs: Sequence[FrameRef], per_file: dict[str, float], default: float | None
                ) -> tuple[list[float | None], list[str]]:
    """Each frame's mm per pixel and where it came from: ``per_file`` by file name ("table"), else ``default``
    ("option"), else a DICOM's own statement ("dicom"; read once per file), else None ("")."""
    stated: dict[Path, float | None] = {}

    def one(r: FrameRef) -> tuple[float | None, str]:
        if r.path.name in per_file:
            return per_file[r.path.name], "table"
        if default is not None:
            return default, "option"
        if r.is_dicom and r.path not in stated:
            stated[r.path] = dicom_pixel_size_mm(r.path)
        size = stated.get(r.path)
        return size, "dicom" if size is not None else ""

    found = [one(r) for r in refs]
    return [size for size, _ in found], [source for _, source in found]


def frame_column(refs: Sequence[FrameRef]) -> Any:
    """The ``frame`` column of a prediction table: the cine-loop frame index, empty for a still."""
    import pandas as pd

    return pd.array([r.index for r in refs], dtype="Int64")


def dicom_pixel_size_mm(path: str | Path) -> float | None:
    """mm per pixel as the DICOM at ``path`` states it (module docstring), None when it states none; raises for
    pixels that are not square."""
    path = Path(path)
    ds = _header(path)
    sizes: list[tuple[float, float, float]] = []  # (area, x mm, y mm)
    for r in ds.get("SequenceOfUltrasoundRegions", None) or []:
        if r.get("PhysicalUnitsXDirection") != CM or r.get("PhysicalUnitsYDirection") != CM:
            continue
        if r.get("RegionSpatialFormat", 1) != 1 or r.get("RegionDataType", 1) != 1:  # 2D tissue only
            continue
        dx, dy = abs(float(r.get("PhysicalDeltaX", 0) or 0)), abs(float(r.get("PhysicalDeltaY", 0) or 0))
        if dx > 0 and dy > 0:
            box = [int(r.get(k, 0) or 0) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                                   "RegionLocationMaxX1", "RegionLocationMaxY1")]
            sizes.append(((box[2] - box[0] + 1) * (box[3] - box[1] + 1), 10 * dx, 10 * dy))
    if sizes:
        _, x, y = max(sizes, key=lambda s: s[0])
        where = "its ultrasound region calibration"
    elif ds.get("PixelSpacing", None):
        y, x = (float(v) for v in ds.PixelSpacing)
        where = "its Pixel Spacing"
    else:
        return None
    if abs(x - y) > SQUARE_TOLERANCE * max(x, y):
        raise SonoshiftError(f"DICOM {path} has pixels of {x:.4g} x {y:.4g} mm ({where}), not square: HC in mm "
                             "needs square pixels (resample the image, then give --pixel-size).")
    return (x + y) / 2


__all__ = [
    "FRAME_SUFFIXES", "FrameRef", "dicom_pixel_size_mm", "frame_column", "list_frames", "pixel_sizes", "read_frame",
]
