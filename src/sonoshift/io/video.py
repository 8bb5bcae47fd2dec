"""Videos: one reader (PyAV decode to full-range gray) and one writer (H.264 MP4 with one set of settings).

Reading: the first video stream, decoded with frame and slice threads; gray is the luma plane read directly and
expanded to full range by a table where that equals FFmpeg's own gray conversion, else the scaler's gray
conversion. Every problem raises SonoshiftError naming the file.

Writing (``write_mp4``): uint8 (T, H, W) gray frames -> H.264 yuv420p MP4, x264 ``crf`` 12 (visually lossless),
preset superfast, tune grain (keeps speckle), gray stored as video-range luma 16..235 with neutral chroma; odd
sides are padded with one black row/column; written to a temporary sibling and renamed.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sonoshift.atomic import atomic_file
from sonoshift.errors import SonoshiftError, short_reason

MP4_CRF = 12  # x264 quality (0 lossless .. 51 worst); 12 is visually lossless
MP4_PRESET = "superfast"
MP4_TUNE = "grain"
_LIMITED_RANGE = np.round(16 + np.arange(256) * (219 / 255)).astype(np.uint8)  # full-range gray -> video luma



def _open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise SonoshiftError(f"video {path} cannot be opened ({short_reason(e)}).") from None
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
            raise SonoshiftError(f"video {path} is corrupt or truncated after frame {count} ({short_reason(e)}).") from None
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


def read_video(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A whole video as uint8 (T, H, W) luma, full range 0..255, and its facts (``video_info`` keys).

    Decodes into one preallocated array (grown when the container's declared frame count is missing or too
    small), opening the file once. Errors as ``iter_video_frames``.
    """
    path = Path(path)
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
    # a slightly over-declared count (edit lists) keeps its few spare frames rather than copying the video
    frames = frames[:n] if frames.shape[0] - n <= frames.shape[0] // 10 else frames[:n].copy()
    return frames, info


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = MP4_CRF) -> None:
    """Encode gray uint8 ``frames`` (T, H, W) as an H.264 MP4 at ``fps`` frames/s (settings: module docstring).

    Odd sides are padded by one black pixel (yuv420p needs even sides). Written to a temporary sibling and
    renamed, so a failure leaves nothing under ``path``.
    """
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 3 or not frames.shape[0]:
        raise ValueError(f"write_mp4 takes uint8 frames (T, H, W) with T >= 1, got {frames.dtype} {frames.shape}.")
    _, h, w = frames.shape
    ph, pw = h + (h % 2), w + (w % 2)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_file(path, "wb") as f:
        with av.open(f, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": MP4_PRESET, "tune": MP4_TUNE}
            # Gray as yuv420p planes directly: Y = gray in video (limited) range 16-235, neutral chroma; the same
            # conversion a colour converter would do, without one per frame.
            planes = np.full((ph * 3 // 2, pw), 128, dtype=np.uint8)
            planes[:ph] = _LIMITED_RANGE[0]
            for frame in frames:
                planes[:h, :w] = _LIMITED_RANGE[frame]
                for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


__all__ = ["MP4_CRF", "iter_video_frames", "luma_lut", "read_video", "video_info", "write_mp4"]
