"""`sonoshift harmonize --live SOURCE`: a capture device or a played file through a translator, live.

Harmonized frames are written as they come to ``OUT/live.mp4`` (each at its source frame's time stamp, so a
dropped frame shows as the previous one held) and shown in a window with ``show`` (needs an OpenCV build with
a GUI); ``OUT/live.json`` records the stream's statistics and which source frames were harmonized.

Output policy (sonoshift.outputs, as `harmonize` on files): ``OUT`` may hold other files; ``live.mp4`` and
``live.json`` appear together or not at all and are recorded in OUT's ledger. A live stream is never the same
twice (which frames are dropped depends on timing), so an earlier live result at ``OUT`` is never reused: it is
replaced with ``force`` and refused otherwise; files sonoshift did not write are refused even with ``force``.
"""

from __future__ import annotations

import contextlib
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sonoshift.deploy.runtime import load_runtime_translator
from sonoshift.deploy.stream import LiveFrame, StreamHarmonizer, StreamStats, open_source
from sonoshift.errors import SonoshiftError
from sonoshift.outputs import all_or_nothing, claim_entries, record_entries, settings_key

DEFAULT_FPS = 25.0
LIVE = "live harmonization"
OUTPUT_NAMES = ("live.mp4", "live.json")


class Mp4Sink:
    """Writes LiveFrames to an H.264 MP4 (pts = source frame index at ``fps``); odd sizes padded by one pixel."""

    def __init__(self, file: Any, fps: float) -> None:
        import av

        self.container = av.open(file, mode="w", format="mp4")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.stream = None
        self.indices: list[int] = []

    def __call__(self, f: LiveFrame) -> None:
        import av

        img = f.image
        h, w = img.shape
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = w + w % 2, h + h % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = 1 / self.rate
            self.stream.options = {"crf": "12", "preset": "veryfast", "tune": "zerolatency"}
        img = np.pad(img, ((0, self.stream.height - h), (0, self.stream.width - w)))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="gray").reformat(format="yuv420p")
        frame.pts, frame.time_base = f.index, 1 / self.rate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.indices.append(f.index)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()


class WindowSink:
    """Shows each frame in an OpenCV window (raises SonoshiftError at once when OpenCV has no GUI)."""

    def __init__(self, title: str = "sonoshift live") -> None:
        import cv2

        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise SonoshiftError("this OpenCV build cannot show windows (opencv-python-headless, or no display); "
                                 "drop --show: the frames are written to OUT/live.mp4.") from None

    def __call__(self, f: LiveFrame) -> None:
        import cv2

        cv2.imshow(self.title, f.image)
        cv2.waitKey(1)


def harmonize_live(
    model: str | Path,
    source: Any,
    out: str | Path,
    *,
    runtime: str = "torch",
    device: str | None = None,
    queue_size: int = 2,
    max_frames: int | None = None,
    show: bool = False,
    paste_back: bool = False,
    crop: bool = True,
    pace: bool = True,
    force: bool = False,
    **translator_options: Any,
) -> StreamStats:
    """Harmonize the live ``source`` (capture device number, file, or an object with ``read() -> (ok, frame)``)
    with ``model`` into ``out/live.mp4`` and ``out/live.json``; returns the stream statistics.

    An earlier live result in ``out`` is replaced only with ``force`` (module docstring); the check runs before
    the model is loaded or the source opened."""
    from sonoshift.engine.device import select_device
    from sonoshift.inference.harmonize import model_identity, translation_geometry

    out = Path(out)
    described = type(source).__name__ if hasattr(source, "read") else str(source)  # a capture object: its kind
    settings = {"model": model_identity(model), "source": described, "runtime": runtime, "queue_size": queue_size,
                "paste_back": paste_back, "crop": crop, "options": translator_options}
    key = settings_key(settings)
    actions = claim_entries(out, dict.fromkeys(OUTPUT_NAMES, key), LIVE, force=force)
    if not force and "reuse" in actions.values():
        raise SonoshiftError(f"{out} already holds a live result (a live stream is never the same twice); pass "
                             "--force to replace it or choose another --out.")
    dev = select_device(device or "auto") if runtime == "torch" else None
    translator, ckpt = load_runtime_translator(model, runtime, dev, **translator_options)
    geo = translation_geometry(translator, ckpt, crop)  # the training crop/size, exactly as `harmonize` uses them
    window = WindowSink() if show else None
    src = source if hasattr(source, "read") else open_source(source, pace=pace)
    fps = float(getattr(src, "fps", None) or DEFAULT_FPS)
    harmonizer = StreamHarmonizer(translator, geo, queue_size=queue_size, paste_back=paste_back,
                                  device=dev)
    existed = out.exists()
    try:
        with all_or_nothing() as batch:
            with open(batch.path(out / "live.mp4"), "wb") as f:
                sink = Mp4Sink(f, fps)

                def emit(frame: LiveFrame) -> None:
                    sink(frame)
                    if window is not None:
                        window(frame)

                try:
                    stats = harmonizer.run(src, emit, max_frames=max_frames)
                finally:
                    sink.close()
            if not sink.indices:  # raised inside the batch: nothing is left behind
                raise SonoshiftError(f"live source {source} delivered no frame.")
            info = {"source": str(source), "model": str(Path(ckpt.path).resolve()), "runtime": runtime, "fps": fps,
                    "queue_size": queue_size, **stats.as_dict(), "harmonized_indices": sink.indices}
            batch.path(out / "live.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
            batch.after_commit(lambda: record_entries(out, dict.fromkeys(OUTPUT_NAMES, key), LIVE))
    except BaseException:
        if not existed:  # leave no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return stats


__all__ = ["Mp4Sink", "WindowSink", "harmonize_live"]
