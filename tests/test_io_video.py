"""io/video.py: the one MP4 writer and the video reader, checked against PyAV's own decode (FFmpeg's scaler)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from sonoshift.errors import SonoshiftError
from sonoshift.io.video import read_video, video_info, write_mp4


def _ffmpeg_gray(path: Path) -> np.ndarray:
    """Independent decode: every frame through FFmpeg's scaler to full-range gray."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])


def test_mp4_round_trip_is_near_lossless(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = np.zeros((6, 64, 48), np.uint8)
    frames[:, 16:48, 8:40] = rng.integers(0, 256, (6, 32, 32))
    frames[:, :8, :8] = 200
    write_mp4(tmp_path / "a.mp4", frames, fps=10)
    back = _ffmpeg_gray(tmp_path / "a.mp4")
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 1.0
    assert back[:, :8, :8].min() >= 199 and back[:, 56:, 44:].max() == 0  # flat overlay and black margin exact
    ours, info = read_video(tmp_path / "a.mp4")
    np.testing.assert_array_equal(ours, back)  # our reader's fast luma path equals the scaler
    assert info["fps"] == pytest.approx(10) and info["codec"] == "h264"


def test_mp4_settings_and_odd_sizes(tmp_path: Path) -> None:
    frames = np.full((3, 15, 21), 128, np.uint8)
    write_mp4(tmp_path / "odd.mp4", frames, fps=12.5)
    with av.open(str(tmp_path / "odd.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (22, 16)  # padded to even sides
        assert s.codec_context.pix_fmt == "yuv420p" and float(s.average_rate) == pytest.approx(12.5)
    back = _ffmpeg_gray(tmp_path / "odd.mp4")
    assert np.abs(back[:, :15, :21].astype(int) - 128).max() <= 1
    assert back[:, 15:, :].max() <= 4 and back[:, :, 21:].max() <= 4  # the padding is black (up to coding ringing)
    assert video_info(tmp_path / "odd.mp4")["declared_frames"] == 3


def test_mp4_writer_refuses_bad_frames_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "f.mp4", np.zeros((2, 8, 8), np.float32), fps=10)
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "e.mp4", np.zeros((0, 8, 8), np.uint8), fps=10)
    assert list(tmp_path.iterdir()) == []


def test_reader_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SonoshiftError, match="bad.mp4"):
        read_video(bad)
