"""Live harmonization: frames one at a time, bounded latency, every dropped frame counted.

A capture thread reads the source (anything with the ``cv2.VideoCapture`` ``read() -> (ok, frame)`` interface: a
capture device, a video file, a DICOM cine or a stack wrapped by :func:`open_source`) as fast as it delivers and
puts each frame, stamped with its capture time, into a bounded queue. When the queue is full the OLDEST waiting
frame is dropped and counted, so a frame never waits behind more than ``queue_size`` others: latency stays below
about (queue_size + 1) model passes however slow the model is, and the stream shows what the probe sees now.

The geometry is that of `harmonize`: the field-of-view crop is found once, from the first ``fov_frames`` frames
(the video method: pixels that change are the image), then every frame is cropped, resized to the prepared square,
translated and mapped back (to the cropped size, or pasted into the full frame).

    h = StreamHarmonizer(translator, geometry)
    stats = h.run(open_source("0"), sink=lambda f: show(f.image))      # a capture device
    print(stats.summary())    # frames read / processed / dropped, frames/s, p50/p99 latency
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sonoshift.data.crop import CropResult, apply_crop, find_fov
from sonoshift.data.resize import resize_stack
from sonoshift.errors import SonoshiftError
from sonoshift.inference.translate import Geometry, from_prepared, prepared_fov, run_translator, to_signed, to_uint8


def gray(frame: np.ndarray) -> np.ndarray:
    """A captured frame as uint8 (H, W): BGR(A) from OpenCV becomes luma (BT.601), grey stays as it is."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    elif frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if frame.ndim != 2:
        raise SonoshiftError(f"a captured frame must be (H, W) or (H, W, C), got shape {frame.shape}.")
    if frame.dtype != np.uint8:
        raise SonoshiftError(f"a captured frame must be uint8, got {frame.dtype}.")
    return frame


class IterSource:
    """Frames from an iterator behind the ``read()`` interface; ``fps`` > 0 with ``pace`` delivers them no faster
    than that rate (a file played as the probe recorded it)."""

    def __init__(self, frames: Iterator[np.ndarray], fps: float | None = None, pace: bool = False) -> None:
        self._it = iter(frames)
        self.fps = fps
        self._period = 1.0 / fps if (pace and fps) else 0.0
        self._next = None

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._period:
            now = time.perf_counter()
            self._next = now if self._next is None else self._next
            if self._next > now:
                time.sleep(self._next - now)
            self._next += self._period
        frame = next(self._it, None)
        return (frame is not None), frame

    def release(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def open_source(spec: str | int | Path, *, pace: bool = True) -> Any:
    """A frame source for ``spec``: an integer (or digits) is an OpenCV capture device; a video file is decoded
    frame by frame; a DICOM, image, folder or .npy stack is read and played. ``pace``: files deliver frames at
    their frame rate (as a probe would; 25 fps when unknown) instead of as fast as they decode."""
    from sonoshift.data.readers import read_stack
    from sonoshift.io.suffixes import VIDEO_SUFFIXES
    from sonoshift.io.video import iter_video_frames, video_info

    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        cap = cv2.VideoCapture(int(spec))
        if not cap.isOpened():
            raise SonoshiftError(f"capture device {spec} cannot be opened.")
        return cap
    path = Path(spec)
    if not path.exists():
        raise SonoshiftError(f"live source {path} does not exist (give a file or a capture device number).")
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        fps = video_info(path).get("fps") or 25.0
        return IterSource(iter_video_frames(path), fps, pace)
    stack = read_stack(path)
    return IterSource(iter(stack.frames), stack.fps or 25.0, pace)


@dataclass
class LiveFrame:
    """One harmonized frame: ``index`` of the frame in the source (gaps are dropped frames), ``image`` uint8,
    ``latency`` seconds from capture to result, ``dropped`` frames dropped so far."""

    index: int
    image: np.ndarray
    latency: float
    dropped: int


@dataclass
class StreamStats:
    """What a stream did: frames read, processed, dropped (read = processed + dropped), per-frame latencies (s),
    wall time (s), and the largest number of frames that waited in the queue."""

    read: int = 0
    processed: int = 0
    dropped: int = 0
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    max_queue: int = 0

    @property
    def fps(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "processed": self.processed, "dropped": self.dropped,
                "drop_fraction": self.dropped / self.read if self.read else 0.0, "frames_per_s": self.fps,
                "latency_p50_ms": 1e3 * self.percentile(50), "latency_p99_ms": 1e3 * self.percentile(99),
                "max_queue": self.max_queue, "elapsed_s": self.elapsed}

    def summary(self) -> str:
        d = self.as_dict()
        return (f"read {self.read} frames, harmonized {self.processed}, dropped {self.dropped} "
                f"({100 * d['drop_fraction']:.1f}%); {d['frames_per_s']:.1f} frames/s; latency p50 "
                f"{d['latency_p50_ms']:.0f} ms, p99 {d['latency_p99_ms']:.0f} ms")


class DropOldestQueue:
    """A bounded FIFO: ``put`` never blocks, and when full discards the oldest item (counted in ``dropped``)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise SonoshiftError(f"the live queue must hold at least one frame, got {size}.")
        self.size = size
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False
        self.max_len = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if len(self._items) >= self.size:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.max_len = max(self.max_len, len(self._items))
            self._cond.notify()

    def requeue_front(self, items: list, size: int) -> None:
        """Put ``items`` (oldest first) back before the waiting ones and bound the queue to ``size`` again."""
        with self._cond:
            self._items.extendleft(reversed(items))
            self.size = size
            while len(self._items) > size:
                self._items.popleft()
                self.dropped += 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def get(self) -> Any | None:
        """The oldest waiting item; blocks until there is one; None once closed and empty."""
        with self._cond:
            while not self._items and not self.closed:
                self._cond.wait()
            return self._items.popleft() if self._items else None


class StreamHarmonizer:
    """Harmonize frames one at a time with a fixed geometry (crop found once) and a translator of any runtime.

    ``__call__(frame)`` harmonizes one uint8 frame synchronously; ``run(source, sink)`` runs the live loop with
    a capture thread and a drop-oldest queue of ``queue_size`` frames. ``paste_back``: results in the full frame
    geometry (field of view replaced), else the cropped size. ``generator``: noise of stochastic translators;
    ``device``: where a PyTorch translator runs (default CPU).
    """

    def __init__(
        self, translator: Any, geometry: Geometry, *, queue_size: int = 2, fov_frames: int = 8,
        paste_back: bool = False, generator: torch.Generator | None = None, device: torch.device | None = None,
    ) -> None:
        self.translator, self.geometry = translator, geometry
        self.queue_size, self.fov_frames = queue_size, max(1, fov_frames)
        self.paste_back, self.generator, self.device = paste_back, generator, device
        self.crop: CropResult | None = None
        self._fov: np.ndarray | None = None

    @property
    def _fit_frames(self) -> int:
        """Frames needed to fix the crop: ``fov_frames``, or one (its size) when the crop is switched off."""
        return 1 if self.geometry.crop.method == "none" else self.fov_frames

    def fit(self, frames: np.ndarray) -> CropResult:
        """Fix the field-of-view crop from uint8 frames (T, H, W) (the first frames of the stream)."""
        self.crop = find_fov(np.asarray(frames), config=self.geometry.crop, name="the live source")
        self._fov = prepared_fov(self.crop, self.geometry.resize)
        return self.crop

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One frame (H, W) uint8 (or BGR) -> harmonized uint8, cropped (h, w) or pasted back (H, W)."""
        frame = gray(frame)
        if self.crop is None:
            self.fit(frame[None])
        if frame.shape != self.crop.full_mask.shape:
            raise SonoshiftError(f"live frame size {frame.shape} differs from the stream's {self.crop.full_mask.shape}.")
        prepared_in = resize_stack(apply_crop(frame[None], self.crop), self.geometry.resize)
        prepared_in[:, ~self._fov] = 0
        y = run_translator(self.translator, to_signed(prepared_in), batch_size=1, generator=self.generator,
                            device=self.device)
        prepared = to_uint8(y)
        prepared[:, ~self._fov] = 0
        out = from_prepared(prepared, self.crop, self.geometry.resize, paste_back=self.paste_back,
                            background=frame[None] if self.paste_back else None)
        return out[0]

    def run(
        self, source: Any, sink: Callable[[LiveFrame], Any] | None = None, *, max_frames: int | None = None
    ) -> StreamStats:
        """Read ``source`` in a capture thread until it ends (or ``max_frames`` are read), harmonize the newest
        frames as fast as the translator allows, and call ``sink`` with each LiveFrame in source order. Returns
        the stream's statistics; frames dropped from the queue are counted there and in each LiveFrame."""
        queue = DropOldestQueue(self.queue_size)
        warm_up = self.crop is None
        if warm_up:  # the frames that fix the crop are never dropped before they are seen
            queue.size = max(self.queue_size, self._fit_frames)
        stats = StreamStats()
        error: list[BaseException] = []
        stop = threading.Event()

        def capture() -> None:
            try:
                while not stop.is_set() and (max_frames is None or stats.read < max_frames):
                    ok, frame = source.read()
                    if not ok or frame is None:
                        break
                    queue.put((stats.read, time.perf_counter(), frame))
                    stats.read += 1
            except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
                error.append(e)
            finally:
                queue.close()

        start = time.perf_counter()
        reader = threading.Thread(target=capture, name="sonoshift-capture", daemon=True)
        reader.start()
        try:
            if warm_up:
                self._warm_up(queue)
            while (item := queue.get()) is not None:
                self._emit(item, stats, queue, sink)
        finally:
            stop.set()
            reader.join(timeout=5.0)
            release = getattr(source, "release", None)
            if release is not None:
                release()
        if error:
            raise error[0]
        stats.elapsed = time.perf_counter() - start
        stats.dropped, stats.max_queue = queue.dropped, queue.max_len
        assert stats.read == stats.processed + stats.dropped, "every frame is harmonized or counted as dropped"
        return stats

    def _warm_up(self, queue: DropOldestQueue) -> None:
        """Fix the crop from the first ``fov_frames`` frames (the queue holds that many until then); they go back
        in front of the queue, which then shrinks to ``queue_size``, dropping (and counting) the oldest."""
        first = []
        while len(first) < self._fit_frames and (item := queue.get()) is not None:
            first.append(item)
        if first:
            self.fit(np.stack([gray(f) for _, _, f in first]))
        queue.requeue_front(first, self.queue_size)

    def _emit(self, item: tuple[int, float, np.ndarray], stats: StreamStats, queue: DropOldestQueue,
              sink: Callable[[LiveFrame], Any] | None) -> None:
        index, t0, frame = item
        image = self(frame)
        latency = time.perf_counter() - t0
        stats.processed += 1
        stats.latencies.append(latency)
        if sink is not None:
            sink(LiveFrame(index, image, latency, queue.dropped))


__all__ = ["DropOldestQueue", "IterSource", "LiveFrame", "StreamHarmonizer", "StreamStats", "gray", "open_source"]
