"""Read any supported ultrasound input into a single-channel uint8 frame stack.

Supported inputs (``read_stack``):

- video ``.mp4 .m4v .avi .mov .mkv`` (``io/video.py``: PyAV, multi-threaded decode, full-range gray);
- DICOM ``.dcm .dicom`` or any file with the ``DICM`` preamble (pydicom; single- and multi-frame;
  MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR; compressed transfer syntaxes that pydicom can
  decode, e.g. RLE Lossless natively and JPEG / JPEG 2000 through the pylibjpeg plug-ins);
- single images ``.png .jpg .jpeg .bmp .tif .tiff`` (``io/images.py``; T = 1; a multi-page TIFF gives one frame
  per page);
- a folder of such images, sorted naturally (``frame2`` before ``frame10``), one frame per image;
- NumPy ``.npy`` stacks shaped (H, W), (T, H, W) or (T, H, W, 3).

Suffixes: ``io/suffixes.py``. Colour becomes luminance with the ITU-R BT.601 weights (0.299 R + 0.587 G +
0.114 B, rounded; ``io.images.luminance``).

Policy for inputs that do not fit 8 bits (decided here, documented in the error messages): 16-bit (or wider)
images and DICOMs with more than 8 stored bits are rejected, as are images with an alpha channel (RGBA, LA,
transparent palettes), because squeezing them into uint8 would lose data silently. A ``.npy`` stack of another
integer type is accepted only when every value already lies in 0..255 (a lossless cast); float stacks are
rejected. Every problem raises ``SonoshiftError`` with one sentence naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonoshift.errors import SonoshiftError, short_reason
from sonoshift.io.images import luminance, read_image_pages
from sonoshift.io.suffixes import DICOM_SUFFIXES, IMAGE_SUFFIXES, NUMPY_SUFFIXES, SUPPORTED_SUFFIXES, VIDEO_SUFFIXES
from sonoshift.io.video import read_video



@dataclass(frozen=True)
class FrameStack:
    """Frames of one item, single-channel uint8.

    frames: uint8 array (T, H, W), C-contiguous, values 0..255.
    fps: frames per second when the source says so (video, DICOM cine), else None.
    patient_id: DICOM PatientID when present and non-empty, else None.
    source: the path that was read.
    meta: anything else useful (``kind``, ``codec``, ``photometric``, ``modality``, ``original_dtype``...).
    """

    frames: np.ndarray
    fps: float | None
    patient_id: str | None
    source: Path
    meta: dict[str, Any] = field(default_factory=dict)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders embedded numbers by value: ``f2.png`` < ``f10.png``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the 128-byte preamble followed by ``DICM``."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_input(path: Path) -> bool:
    """Whether ``read_stack`` reads the file at ``path`` as DICOM: a DICOM suffix, or no known suffix and the
    DICM preamble."""
    suffix = path.suffix.lower()
    other = IMAGE_SUFFIXES | NUMPY_SUFFIXES | VIDEO_SUFFIXES
    return suffix in DICOM_SUFFIXES or (suffix not in other and is_dicom_file(path))


def read_stack(path: str | Path) -> FrameStack:
    """Read a video, DICOM, image, folder of images or ``.npy`` stack as uint8 frames (T, H, W).

    The kind is chosen by the suffix (a file without a known suffix is read as DICOM when it has the DICM
    preamble). Raises SonoshiftError naming the file for a missing path, an unsupported type, unreadable or
    truncated data, an empty folder, a DICOM without pixel data, 16-bit or alpha-channel images.
    """
    path = Path(path)
    if not path.exists():
        raise SonoshiftError(f"input {path} does not exist.")
    if path.is_dir():
        return _read_folder(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        frames, info = read_video(path)
        return FrameStack(frames, info["fps"], None, path, {**info, "original_dtype": "uint8"})
    if is_dicom_input(path):
        return _read_dicom(path)
    if suffix in IMAGE_SUFFIXES:
        frames, meta = _read_image(path)
        return FrameStack(frames, None, None, path, meta)
    if suffix in NUMPY_SUFFIXES:
        return _read_npy(path)
    known = sorted(SUPPORTED_SUFFIXES)
    raise SonoshiftError(f"input {path} has an unsupported type (expected a folder or one of {', '.join(known)}).")


# --------------------------------------------------------------------------------------------------- DICOM


def _read_dicom(path: Path) -> FrameStack:
    import pydicom
    from pydicom.pixels import apply_color_lut, pixel_array

    try:
        ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_SUFFIXES)
    except Exception as e:  # pydicom raises many types for malformed files
        raise SonoshiftError(f"DICOM {path} cannot be read ({short_reason(e)}).") from None
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise SonoshiftError(f"DICOM {path} holds float pixel data; only 8-bit images are supported.")
        raise SonoshiftError(f"DICOM {path} has no pixel data (it is not an image).")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    if bits_stored > 8 and photometric != "PALETTE COLOR":
        raise SonoshiftError(
            f"DICOM {path} has {bits_stored}-bit samples; sonoshift reads 8-bit ultrasound only "
            "(convert it to 8 bits with your own windowing first)."
        )
    tsyntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    try:
        arr = pixel_array(ds)  # YBR_* is converted to RGB here (as_rgb=True by default)
    except Exception as e:
        name = getattr(tsyntax, "name", str(tsyntax))
        raise SonoshiftError(
            f"DICOM {path} pixel data cannot be decoded (transfer syntax {name}: {short_reason(e)})."
        ) from None
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        depth = int(ds.RedPaletteColorLookupTableDescriptor[2])
        if depth > 8:
            rgb = rgb >> (depth - 8)  # display LUTs: keep the most significant 8 bits of each entry
        arr, spp = luminance(rgb), 1
    elif spp == 3:
        arr = luminance(arr)
    elif spp != 1:
        raise SonoshiftError(f"DICOM {path} has {spp} samples per pixel; expected 1 or 3.")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise SonoshiftError(f"DICOM {path} holds negative (signed) pixel values; only unsigned 8-bit is supported.")
    if photometric == "MONOCHROME1":
        arr = (2**bits_stored - 1) - arr.astype(np.int32)  # MONOCHROME1: 0 is white
    if n_frames == 1 and arr.ndim == 2:
        arr = arr[None]
    frames = np.ascontiguousarray(arr, dtype=np.uint8)
    patient = str(ds.get("PatientID", "") or "").strip() or None
    meta = {
        "kind": "dicom",
        "modality": str(ds.get("Modality", "")) or None,
        "photometric": photometric,
        "transfer_syntax": str(tsyntax) if tsyntax is not None else None,
        "bits_stored": bits_stored,
        "number_of_frames": n_frames,
        "original_dtype": str(arr.dtype),
    }
    return FrameStack(frames, _dicom_fps(ds), patient, path, meta)


def _dicom_fps(ds: Any) -> float | None:
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        value = ds.get(key, None)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    frame_time = ds.get("FrameTime", None)  # milliseconds between frames
    if frame_time not in (None, "") and float(frame_time) > 0:
        return 1000.0 / float(frame_time)
    return None


# --------------------------------------------------------------------------------------------------- images


def _read_image(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """One image file -> (frames (T, H, W) uint8, meta). T > 1 only for multi-page TIFF."""
    return read_image_pages(path), {"kind": "image", "original_dtype": "uint8"}


def _read_folder(path: Path) -> FrameStack:
    frames_in = (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    files = sorted((p for p in frames_in if p.is_file()), key=lambda p: natural_key(p.name))
    if not files:
        raise SonoshiftError(f"folder {path} holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    frames = []
    for f in files:
        stack, _ = _read_image(f)
        if frames and stack.shape[1:] != frames[0].shape[1:]:
            raise SonoshiftError(
                f"frame {f} is {stack.shape[2]}x{stack.shape[1]} but the first frame of {path} is "
                f"{frames[0].shape[2]}x{frames[0].shape[1]}; all frames of a folder must have one size."
            )
        frames.append(stack)
    meta = {"kind": "folder", "files": [f.name for f in files], "original_dtype": "uint8"}
    return FrameStack(np.ascontiguousarray(np.concatenate(frames)), None, None, path, meta)


# --------------------------------------------------------------------------------------------------- numpy


def _read_npy(path: Path) -> FrameStack:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise SonoshiftError(f"NumPy file {path} cannot be read ({short_reason(e)}).") from None
    original = str(arr.dtype)
    if arr.size == 0:
        raise SonoshiftError(f"NumPy file {path} holds an empty array of shape {arr.shape}.")
    if arr.ndim == 4 and arr.shape[-1] == 4:
        raise SonoshiftError(f"NumPy file {path} has 4 channels (RGBA); save it as (T, H, W) or (T, H, W, 3).")
    if arr.ndim not in (2, 3) and not (arr.ndim == 4 and arr.shape[-1] == 3):
        raise SonoshiftError(f"NumPy file {path} has shape {arr.shape}; expected (H, W), (T, H, W) or (T, H, W, 3).")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise SonoshiftError(
                f"NumPy file {path} is {arr.dtype} with values {lo}..{hi}, outside 0..255; "
                "converting it to uint8 would lose data (rescale it yourself first)."
            )
        arr = arr.astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise SonoshiftError(f"NumPy file {path} has dtype {arr.dtype}; expected uint8 (or integers in 0..255).")
    if arr.ndim == 4:
        arr = luminance(arr)
    if arr.ndim == 2:
        arr = arr[None]
    meta = {"kind": "npy", "original_dtype": original}
    return FrameStack(np.ascontiguousarray(arr), None, None, path, meta)

