"""Live harmonization: drop-oldest queue, a fake capture device faster than the model, exact frames, `--live`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_harmonize import cine, model_dir  # noqa: F401  (the fixture is re-exported)
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.data.crop import CropConfig, find_fov
from sonoshift.data.readers import read_stack
from sonoshift.data.resize import ResizeConfig
from sonoshift.deploy.live import harmonize_live
from sonoshift.deploy.stream import DropOldestQueue, StreamHarmonizer, gray
from sonoshift.errors import SonoshiftError
from sonoshift.io.video import write_mp4
from sonoshift.methods import load_translator
from sonoshift.inference.translate import Geometry, harmonize_stack

NO_CROP = Geometry(CropConfig(method="none"), ResizeConfig(size=32))
AUTO = Geometry(CropConfig(), ResizeConfig(size=32))


class FakeCapture:
    """The cv2.VideoCapture read() interface over a stack of frames (BGR like OpenCV), one every ``period`` s."""

    def __init__(self, frames: np.ndarray, bgr: bool = True, period: float = 0.0) -> None:
        self.frames, self.bgr, self.i, self.released, self.period = frames, bgr, 0, False, period

    def read(self):
        time.sleep(self.period)
        if self.i >= len(self.frames):
            return False, None
        f = self.frames[self.i]
        self.i += 1
        return True, (np.repeat(f[..., None], 3, axis=2) if self.bgr else f)

    def release(self) -> None:
        self.released = True


class LockstepCapture(FakeCapture):
    """Delivers ``free`` frames at once, then one more each time ``done()`` is called (a consumer-paced source)."""

    def __init__(self, frames: np.ndarray, free: int) -> None:
        super().__init__(frames, bgr=False)
        self.permits = threading.Semaphore(free)

    def read(self):
        self.permits.acquire()
        return super().read()

    def done(self, _frame=None) -> None:
        self.permits.release()


class Slow:
    """A translator that takes at least ``delay`` seconds per call (slower than the fake capture device)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.method, self.image_size = inner.method, inner.image_size
        self.source_domain, self.target_domain = inner.source_domain, inner.target_domain

    def __call__(self, x, generator=None):
        time.sleep(self.delay)
        return self.inner(x)


def test_drop_oldest_queue_keeps_the_newest_and_counts() -> None:
    q = DropOldestQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and q.max_len == 2
    q.close()
    assert [q.get(), q.get(), q.get()] == [3, 4, None]
    with pytest.raises(SonoshiftError, match="at least one"):
        DropOldestQueue(0)


def test_gray_converts_opencv_frames() -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 200  # pure red in BGR order
    assert gray(bgr).shape == (4, 5) and int(gray(bgr)[0, 0]) == round(0.299 * 200)
    with pytest.raises(SonoshiftError, match="uint8"):
        gray(np.zeros((4, 5), np.float32))


def test_fake_capture_faster_than_the_model_drops_oldest_and_counts(model_dir: Path) -> None:  # noqa: F811
    frames = cine(t=40, h=40, w=48)
    tr = load_translator(model_dir)
    h = StreamHarmonizer(Slow(tr, 0.025), NO_CROP, queue_size=2)
    got = []
    cap = FakeCapture(frames, period=0.004)  # 250 frames/s in, at most 40 frames/s out
    stats = h.run(cap, got.append)
    assert cap.released and stats.read == 40
    assert stats.dropped > 0 and stats.processed + stats.dropped == 40 and stats.max_queue <= 2
    idx = [f.index for f in got]
    assert idx == sorted(set(idx)) and len(idx) == stats.processed and idx[-1] == 39  # the newest frame is shown
    assert stats.dropped == 40 - len(idx)  # every missing index is a counted drop
    assert [f.dropped for f in got] == sorted(f.dropped for f in got)
    # each harmonized frame is exactly the offline harmonization of that frame
    for f in got[:: max(1, len(got) // 4)]:
        ref = harmonize_stack(frames[f.index : f.index + 1], tr, NO_CROP).frames[0]
        np.testing.assert_array_equal(f.image, ref)
    assert len(stats.latencies) == stats.processed and "dropped" in stats.summary()


def test_consumer_paced_source_loses_nothing(model_dir: Path) -> None:  # noqa: F811
    frames = cine(t=12, h=40, w=48)
    cap = LockstepCapture(frames, free=1)
    got = []
    stats = StreamHarmonizer(load_translator(model_dir), NO_CROP, queue_size=1).run(
        cap, lambda f: (got.append(f), cap.done()))
    assert stats.dropped == 0 and [f.index for f in got] == list(range(12))


def test_warm_up_crop_from_the_first_frames_and_exact_outputs(model_dir: Path) -> None:  # noqa: F811
    frames = cine(t=14, h=40, w=48)
    tr = load_translator(model_dir)
    cap = LockstepCapture(frames, free=8)
    got = []
    h = StreamHarmonizer(tr, AUTO, queue_size=2, fov_frames=8)
    stats = h.run(cap, lambda f: (got.append(f), cap.done()))
    # the 8 warm-up frames fix the crop; the 6 oldest of them are then dropped (queue of 2), all later frames kept
    assert stats.dropped == 6 and [f.index for f in got] == list(range(6, 14))
    ref_crop = find_fov(frames[:8], config=AUTO.crop)
    np.testing.assert_array_equal(h.crop.full_mask, ref_crop.full_mask)
    ref = harmonize_stack(frames[:8], tr, AUTO).frames  # offline: the same crop from the same 8 frames
    np.testing.assert_array_equal(got[0].image, ref[6])
    np.testing.assert_array_equal(got[1].image, ref[7])
    assert got[0].image.shape == ref_crop.mask.shape
    assert (got[0].image[~ref_crop.mask] == 0).all()  # nothing outside the field of view survives


def test_harmonize_live_writes_video_and_stats(model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    frames = cine(t=10, h=40, w=48)
    stats = harmonize_live(model_dir, FakeCapture(frames), tmp_path / "live", runtime="onnx", queue_size=1)
    info = json.loads((tmp_path / "live" / "live.json").read_text())
    assert info["read"] == 10 and info["processed"] + info["dropped"] == 10 == stats.read
    assert info["runtime"] == "onnx" and len(info["harmonized_indices"]) == info["processed"]
    video = read_stack(tmp_path / "live" / "live.mp4")
    h, w = find_fov(frames[:8]).mask.shape  # the crop fixed from the first 8 frames (MP4 pads odd sides)
    assert video.frames.shape[1:] == (h + h % 2, w + w % 2) and len(video.frames) == info["processed"]
    with pytest.raises(SonoshiftError, match="delivered no frame"):
        harmonize_live(model_dir, FakeCapture(frames[:0]), tmp_path / "empty")
    assert not (tmp_path / "empty" / "live.mp4").exists()


def test_live_follows_the_output_policy(model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """OUT may hold other files; an earlier live result is replaced only with force; a user's live.mp4 never."""
    frames = cine(t=6, h=40, w=48)
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    harmonize_live(model_dir, FakeCapture(frames), out)
    first = (out / "live.json").read_bytes()
    ledger = json.loads((out / ".sonoshift-outputs.json").read_text())["outputs"]
    assert set(ledger) == {"live.mp4", "live.json"} and (out / "notes.txt").read_text() == "mine"
    with pytest.raises(SonoshiftError, match="already holds a live result"):
        harmonize_live(model_dir, FakeCapture(frames), out)  # same settings: still refused (never the same twice)
    assert (out / "live.json").read_bytes() == first
    harmonize_live(model_dir, FakeCapture(frames[:4]), out, force=True)
    assert json.loads((out / "live.json").read_text())["read"] == 4 and (out / "notes.txt").read_text() == "mine"
    user = tmp_path / "u"
    user.mkdir()
    (user / "live.mp4").write_bytes(b"a user's video")
    with pytest.raises(SonoshiftError, match="not written by sonoshift"):
        harmonize_live(model_dir, FakeCapture(frames), user, force=True)
    assert (user / "live.mp4").read_bytes() == b"a user's video" and not (user / "live.json").exists()
    assert sorted(p.name for p in user.iterdir()) == ["live.mp4"]  # no temporaries left behind


def test_cli_live_on_a_video_file(model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    video = tmp_path / "sweep.mp4"
    write_mp4(video, cine(t=12, h=40, w=48), fps=200.0)  # played at 200 fps: faster than real time
    res = CliRunner().invoke(app, ["harmonize", "-m", str(model_dir), "-o", str(tmp_path / "o"), "--live", str(video),
                                   "--max-frames", "9"])
    assert res.exit_code == 0, res.output
    assert "dropped" in res.output and "read 9 frames" in res.output
    assert json.loads((tmp_path / "o" / "live.json").read_text())["read"] == 9
    res = CliRunner().invoke(app, ["harmonize", "-m", str(model_dir), "-o", str(tmp_path / "o2"), "--live",
                                   str(tmp_path / "missing.mp4")])
    assert res.exit_code != 0 and "does not exist" in str(res.exception)


def test_synchronous_call_matches_offline(model_dir: Path) -> None:  # noqa: F811
    frames = cine(t=3, h=40, w=48)
    tr = load_translator(model_dir)
    h = StreamHarmonizer(tr, NO_CROP, paste_back=True)
    out = np.stack([h(f) for f in frames])
    np.testing.assert_array_equal(out, harmonize_stack(frames, tr, NO_CROP, paste_back=True).frames)
    with pytest.raises(SonoshiftError, match="differs"):
        h(frames[0][:20])
    assert torch.is_tensor(torch.as_tensor(out))
