"""Read any supported ultrasound input into a single-channel uint8 frame stack.

Supported inputs (``read_stack``):

- video ``.mp4 .avi .mov .mkv`` (PyAV, multi-threaded decode; gray is the luma plane read directly and expanded
  to full range by a table, or the scaler's gray conversion for other pixel formats);
- DICOM ``.dcm .dicom`` or any file with the ``DICM`` preamble (pydicom; single- and multi-frame;
  MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR; compressed transfer syntaxes that pydicom can
  decode, e.g. RLE Lossless natively and JPEG / JPEG 2000 through the pylibjpeg plug-ins);
- single images ``.png .jpg .jpeg .bmp .tif .tiff`` (T = 1; a multi-page TIFF gives one frame per page);
- a folder of such images, sorted naturally (``frame2`` before ``frame10``), one frame per image;
- NumPy ``.npy`` stacks shaped (H, W), (T, H, W) or (T, H, W, 3).

Colour becomes luminance with the ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B, rounded).

Policy for inputs that do not fit 8 bits (decided here, documented in the error messages): 16-bit (or wider)
images and DICOMs with more than 8 stored bits are rejected, as are images with an alpha channel (RGBA, LA,
transparent palettes), because squeezing them into uint8 would lose data silently. A ``.npy`` stack of another
integer type is accepted only when every value already lies in 0..255 (a lossless cast); float stacks are
rejected. Every problem raises ``SonoshiftError`` with one sentence naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonoshift.errors import SonoshiftError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
NUMPY_SUFFIXES = frozenset({".npy"})


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


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB array (..., 3) with values 0..255 -> uint8 (...), rounded half up."""
    r = rgb[..., 0].astype(np.uint32)
    g = rgb[..., 1].astype(np.uint32)
    b = rgb[..., 2].astype(np.uint32)
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).astype(np.uint8)


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
        return _read_video(path)
    if suffix in DICOM_SUFFIXES or (suffix not in IMAGE_SUFFIXES | NUMPY_SUFFIXES and is_dicom_file(path)):
        return _read_dicom(path)
    if suffix in IMAGE_SUFFIXES:
        frames, meta = _read_image(path)
        return FrameStack(frames, None, None, path, meta)
    if suffix in NUMPY_SUFFIXES:
        return _read_npy(path)
    known = sorted(VIDEO_SUFFIXES | DICOM_SUFFIXES | IMAGE_SUFFIXES | NUMPY_SUFFIXES)
    raise SonoshiftError(f"input {path} has an unsupported type (expected a folder or one of {', '.join(known)}).")


# --------------------------------------------------------------------------------------------------- video


def _open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise SonoshiftError(f"video {path} cannot be opened ({_short(e)}).") from None
    if not container.streams.video:
        container.close()
        raise SonoshiftError(f"video {path} holds no video stream.")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: the decode is the bottleneck for long videos
    return container, stream


def _stream_info(container: Any, stream: Any) -> dict[str, Any]:
    rate = stream.average_rate or stream.guessed_rate
    return {
        "kind": "video",
        "codec": stream.codec_context.name,
        "container": container.format.name,
        "width": stream.codec_context.width,
        "height": stream.codec_context.height,
        "fps": float(rate) if rate else None,
        "declared_frames": int(stream.frames or 0),
    }


def video_info(path: str | Path) -> dict[str, Any]:
    """Container facts without decoding: width, height, codec, fps (or None), declared frame count (0 = unknown)."""
    path = Path(path)
    container, stream = _open_video(path)
    try:
        return _stream_info(container, stream)
    finally:
        container.close()


# Pixel formats whose first plane is the 8-bit luma (Y) of the image, one byte per pixel. For these the gray
# frame is that plane passed through a 256-entry table (identity for full range, 16..235 -> 0..255 for limited
# range), which is what FFmpeg's scaler computes for format="gray" at a fraction of its cost.
_LUMA_PLANE_FORMATS = frozenset(
    {
        "gray",
        "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
        "yuv411p", "yuvj411p", "yuv410p", "nv12", "nv21", "nv16", "nv24", "nv42", "yuva420p", "yuva422p",
        "yuva444p",
    }
)  # fmt: skip
_LUMA_LUTS: dict[tuple[str, int, int], np.ndarray | None] = {}


def luma_lut(format_name: str, color_range: int, colorspace: int) -> np.ndarray | None:
    """Table that maps stored 8-bit luma codes to the gray levels of FFmpeg's own gray conversion.

    format_name: the frame's pixel format (e.g. ``yuv420p``); color_range / colorspace: its FFmpeg enum values.
    Returns a uint8 array (256,) with ``lut[y]`` = the level ``VideoFrame.to_ndarray(format="gray")`` gives a
    pixel of stored luma ``y`` (found once per key by converting a probe frame that holds every code 0..255),
    or None when the format has no directly readable 8-bit luma plane or the probe does not behave like a
    per-pixel table (then callers use the scaler). Cached per key.
    """
    key = (format_name, int(color_range), int(colorspace))
    if key not in _LUMA_LUTS:
        _LUMA_LUTS[key] = _probe_luma_lut(*key) if format_name in _LUMA_PLANE_FORMATS else None
    return _LUMA_LUTS[key]


def _probe_luma_lut(format_name: str, color_range: int, colorspace: int) -> np.ndarray | None:
    import av

    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    try:
        probe = av.VideoFrame(16, 16, format_name)
        probe.color_range = color_range
        probe.colorspace = colorspace
        for k, plane in enumerate(probe.planes):
            buf = np.frombuffer(plane, np.uint8)  # writable view of the frame's own memory
            if k == 0:
                buf.reshape(plane.height, plane.line_size)[:, :16] = codes
            else:
                buf[:] = 255 if format_name.startswith("yuva") and k == 3 else 128  # neutral chroma, opaque
        gray = probe.to_ndarray(format="gray")
    except (ValueError, TypeError, AttributeError, av.FFmpegError):
        return None
    lut = np.ascontiguousarray(gray.reshape(256), dtype=np.uint8)
    if gray.shape != (16, 16) or np.any(np.diff(lut.astype(np.int16)) < 0):
        return None  # not a monotone per-pixel mapping: leave it to the scaler
    return lut


def _luma_view(frame: Any) -> np.ndarray:
    """The frame's first plane as a uint8 (H, W) view (no copy), skipping the row padding of ``line_size``."""
    plane = frame.planes[0]
    h, w, stride = frame.height, frame.width, plane.line_size
    return np.frombuffer(plane, np.uint8, count=stride * h).reshape(h, stride)[:, :w]


class _GrayConverter:
    """Turns decoded frames into full-range uint8 gray, reading the luma plane directly where that is exact."""

    def __init__(self) -> None:
        self._key: tuple[str, int, int] | None = None
        self._lut: np.ndarray | None = None
        self._identity = False

    def _table(self, frame: Any) -> np.ndarray | None:
        key = (frame.format.name, int(frame.color_range), int(frame.colorspace))
        if key != self._key:
            self._key, self._lut = key, luma_lut(*key)
            self._identity = self._lut is not None and np.array_equal(self._lut, np.arange(256))
        return self._lut

    def convert(self, frame: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Gray uint8 (H, W) of ``frame``, written into ``out`` (C-contiguous (H, W) uint8) when given."""
        lut = self._table(frame)
        if lut is None:
            gray = frame.to_ndarray(format="gray")
            if out is None:
                return gray
            out[...] = gray
            return out
        y = _luma_view(frame)
        if out is None:
            out = np.empty(y.shape, np.uint8)
        if self._identity:
            np.copyto(out, y)
        else:
            import cv2

            cv2.LUT(y, lut, dst=out)
        return out


def _decoded_frames(path: Path, container: Any, stream: Any) -> Iterator[Any]:
    """Yield the decoded PyAV frames of ``stream``, all of one size; closes ``container`` at the end.

    Raises SonoshiftError naming the file when decoding fails, no frame decodes, the frame size changes, or
    the video ends clearly before the frame count its container declares (a shortfall of up to max(2, 2%)
    frames is tolerated for edit lists).
    """
    import av

    declared = int(stream.frames or 0)
    count = 0
    shape = None
    try:
        try:
            for frame in container.decode(stream):
                if shape is None:
                    shape = (frame.height, frame.width)
                elif (frame.height, frame.width) != shape:
                    raise SonoshiftError(
                        f"video {path} changes frame size at frame {count} ({shape[1]}x{shape[0]} -> "
                        f"{frame.width}x{frame.height}); split it into parts of one size."
                    )
                yield frame
                count += 1
        except (av.FFmpegError, OSError) as e:
            raise SonoshiftError(f"video {path} is corrupt or truncated after frame {count} ({_short(e)}).") from None
    finally:
        container.close()
    if count == 0:
        raise SonoshiftError(f"video {path} holds no decodable frame (corrupt or empty video).")
    # a few frames may legitimately be dropped by edit lists; a cut file loses many more
    if declared and count < declared - max(2, declared // 50):
        raise SonoshiftError(
            f"video {path} is truncated: its container declares {declared} frames but only {count} decode."
        )


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video one by one as uint8 (H, W) luma, full range 0..255, in display order.

    Streams without holding the video in memory. Raises SonoshiftError naming the file when the video cannot
    be opened or decoded, holds no frame, changes frame size, or ends clearly before the frame count its
    container declares (truncated; a shortfall of up to max(2, 2%) frames is tolerated for edit lists).
    """
    path = Path(path)
    container, stream = _open_video(path)
    gray = _GrayConverter()
    for frame in _decoded_frames(path, container, stream):
        yield gray.convert(frame)


def _read_video(path: Path) -> FrameStack:
    """Decode a whole video into one preallocated (T, H, W) uint8 array (grown when the container's declared
    frame count is missing or too small), opening the file once."""
    container, stream = _open_video(path)
    info = _stream_info(container, stream)
    gray = _GrayConverter()
    frames: np.ndarray | None = None
    n = 0
    for frame in _decoded_frames(path, container, stream):
        if frames is None:
            frames = np.empty((max(info["declared_frames"], 1), frame.height, frame.width), np.uint8)
        elif n == frames.shape[0]:
            grown = np.empty((n + max(n // 2, 16),) + frames.shape[1:], np.uint8)
            grown[:n] = frames
            frames = grown
        gray.convert(frame, frames[n])
        n += 1
    assert frames is not None  # _decoded_frames raises when no frame decodes
    info["original_dtype"] = "uint8"
    # a slightly over-declared count (edit lists) keeps its few spare frames rather than copying the video
    frames = frames[:n] if frames.shape[0] - n <= frames.shape[0] // 10 else frames[:n].copy()
    return FrameStack(frames, info["fps"], None, path, info)


# --------------------------------------------------------------------------------------------------- DICOM


def _read_dicom(path: Path) -> FrameStack:
    import pydicom
    from pydicom.pixels import apply_color_lut, pixel_array

    try:
        ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_SUFFIXES)
    except Exception as e:  # pydicom raises many types for malformed files
        raise SonoshiftError(f"DICOM {path} cannot be read ({_short(e)}).") from None
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
            f"DICOM {path} pixel data cannot be decoded (transfer syntax {name}: {_short(e)})."
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
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            pages = [_pil_to_gray(page, path) for page in ImageSequence.Iterator(im)]
    except SonoshiftError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise SonoshiftError(f"image {path} cannot be read ({_short(e)}).") from None
    shapes = {p.shape for p in pages}
    if len(shapes) != 1:
        raise SonoshiftError(f"image {path} has pages of different sizes {sorted(shapes)}.")
    return np.ascontiguousarray(np.stack(pages)), {"kind": "image", "mode": mode, "original_dtype": "uint8"}


def _pil_to_gray(im: Any, path: Path) -> np.ndarray:
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
        raise SonoshiftError(f"NumPy file {path} cannot be read ({_short(e)}).") from None
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


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    return text[:160].rstrip(".")
