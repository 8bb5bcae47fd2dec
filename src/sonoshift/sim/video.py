"""Cine-loop writer: a (T, H, W) uint8 stack to an H.264 MP4 (PyAV), as a scanner's clip export would be."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


_LIMITED_RANGE = np.round(16 + np.arange(256) * (219 / 255)).astype(np.uint8)


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 10, crf: int = 12) -> None:
    """Encode ``frames`` (T, H, W) uint8 (H, W even) as an H.264 yuv420p MP4 at ``fps`` frames/s.

    ``crf`` is the x264 quality (0 lossless luma .. 51 worst); 12 is visually lossless. The caller writes into an
    atomic temporary folder, so a failure leaves no partial file behind.
    """
    t, h, w = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "superfast", "tune": "grain"}
        # Grey frames as yuv420p planes directly: Y = grey in video (limited) range 16-235, neutral chroma; the
        # same conversion a colour converter would do, without one per frame.
        planes = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        for i in range(t):
            planes[:h] = _LIMITED_RANGE[frames[i]]
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_mp4(path: str | Path) -> np.ndarray:
    """Decode an MP4 to a (T, H, W) uint8 luma stack (for tests and the contact sheet)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
