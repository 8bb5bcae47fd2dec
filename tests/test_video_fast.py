"""Fast video path: luma plane + table against FFmpeg's gray conversion, fused crop + resize against the
separate steps."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sonoshift.data.crop import apply_crop, crop_from_mask
from sonoshift.data.readers import read_stack
from sonoshift.io.video import iter_video_frames, luma_lut
from sonoshift.data.resize import ResizeConfig, crop_resize_stack, resize_stack

RNG = np.random.default_rng(7)


def speckle_stack(t: int = 8, h: int = 24, w: int = 40) -> np.ndarray:
    """Smooth gradient times noise: every gray level range shows up, including the dark and bright ends."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 6 + yy * 3) % 256
    return np.stack([np.clip(base * RNG.uniform(0.0, 1.3, (h, w)) + 4 * k, 0, 255).astype(np.uint8) for k in range(t)])


def write_video(path: Path, frames: np.ndarray, codec: str, pix_fmt: str) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "20", "preset": "ultrafast"}
        for f in frames:
            vf = av.VideoFrame.from_ndarray(f, format="gray")
            if pix_fmt.startswith("yuvj"):
                vf = vf.reformat(format=pix_fmt)
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def scaler_gray(path: Path) -> tuple[np.ndarray, list[tuple[str, int, int, int]]]:
    """Reference: FFmpeg's own conversion (to_ndarray(format="gray")), single-threaded; plus frame facts."""
    with av.open(str(path)) as c:
        frames, facts = [], []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="gray"))
            facts.append((f.format.name, int(f.color_range), int(f.colorspace), f.planes[0].line_size))
    return np.stack(frames), facts


def test_luma_lut_against_bt601_range_formula():
    limited = np.clip(np.floor((np.arange(256) - 16) * 255 / 219 + 0.5), 0, 255)
    for fmt in ("yuv420p", "yuv422p", "yuv444p", "nv12"):
        for color_range in (0, 1):  # unspecified is treated as limited (MPEG) range, like FFmpeg does
            lut = luma_lut(fmt, color_range, 2)
            assert lut is not None and lut.dtype == np.uint8 and lut.shape == (256,)
            assert np.abs(lut.astype(int) - limited).max() <= 1
            assert lut[16] == 0 and lut[235] == 255 and lut[0] == 0 and lut[255] == 255
    identity = np.arange(256)
    for fmt, color_range in (("yuv420p", 2), ("yuvj420p", 0), ("yuvj420p", 2), ("gray", 0)):
        assert np.array_equal(luma_lut(fmt, color_range, 2), identity)  # full range: the plane is the gray
    assert luma_lut("rgb24", 0, 2) is None and luma_lut("yuv420p10le", 0, 2) is None  # no 8-bit luma plane


def test_fast_gray_equals_scaler_on_h264_mp4(tmp_path):
    """MP4 written by PyAV (yuv420p, limited range, padded rows): the fast path is within 1 level of the scaler."""
    path = tmp_path / "clip.mp4"
    frames = speckle_stack()
    write_video(path, frames, "libx264", "yuv420p")
    ref, facts = scaler_gray(path)
    fmt, color_range, _, line_size = facts[0]
    assert fmt == "yuv420p" and color_range in (0, 1) and line_size > frames.shape[2]  # padding is exercised
    assert luma_lut(*facts[0][:3]) is not None  # the fast path is taken, not the scaler fallback
    got = read_stack(path).frames
    assert got.shape == ref.shape == frames.shape and got.dtype == np.uint8 and got.flags.c_contiguous
    assert np.abs(got.astype(int) - ref).max() <= 1
    assert ref.min() == 0 and ref.max() == 255  # the limited range really was expanded to 0..255 in both
    assert np.array_equal(np.stack(list(iter_video_frames(path))), got)


def test_fast_gray_full_range_mjpeg(tmp_path):
    """Full-range (JPEG) luma is used as it is."""
    path = tmp_path / "clip.avi"
    frames = speckle_stack(t=5)
    write_video(path, frames, "mjpeg", "yuvj420p")
    ref, facts = scaler_gray(path)
    assert facts[0][0] == "yuvj420p"
    got = read_stack(path).frames
    assert np.abs(got.astype(int) - ref).max() <= 1


def test_scaler_fallback_for_rgb_video(tmp_path):
    """A pixel format without a luma plane (RGB PNG frames) goes through the scaler, as before."""
    path = tmp_path / "clip.mov"
    rgb = RNG.integers(0, 256, size=(4, 16, 24, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "rgb24"
        for f in rgb:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    ref, facts = scaler_gray(path)
    assert facts[0][0] == "rgb24"
    assert np.array_equal(read_stack(path).frames, ref)


def test_unknown_frame_count_grows_buffer(tmp_path):
    """Matroska declares no frame count: the preallocated stack must grow, and stay exact (lossless FFV1)."""
    path = tmp_path / "clip.mkv"
    frames = RNG.integers(0, 256, size=(40, 12, 20), dtype=np.uint8)
    write_video(path, frames, "ffv1", "gray")
    st = read_stack(path)
    assert st.meta["declared_frames"] == 0
    assert st.frames.shape == frames.shape and st.frames.flags.c_contiguous
    assert np.array_equal(st.frames, frames)


@pytest.mark.parametrize(
    "shape,size,mode",
    [((5, 60, 44), 16, "pad"), ((5, 40, 64), 16, "pad"), ((3, 50, 30), 20, "stretch"), ((2, 10, 12), 32, "pad")],
)
def test_crop_resize_equals_separate_steps(shape, size, mode):
    """Fused crop + resize == apply_crop -> resize_stack -> zero outside the nearest-resized mask."""
    t, h, w = shape
    frames = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    full = ((yy - h / 2) ** 2 / (0.4 * h) ** 2 + (xx - w / 2) ** 2 / (0.35 * w) ** 2) < 1  # an ellipse
    crop = crop_from_mask(full)
    cfg = ResizeConfig(size=size, mode=mode)
    got, mask = crop_resize_stack(frames, crop, cfg)
    ref_mask = resize_stack(crop.mask.astype(np.uint8) * 255, cfg, nearest=True)
    ref = resize_stack(apply_crop(frames, crop), cfg)
    ref[:, ref_mask == 0] = 0
    assert got.shape == (t, size, size) and got.dtype == np.uint8
    assert np.array_equal(mask, ref_mask) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(got, ref)


def test_resize_stack_places_frames_like_manual_pad():
    """Pad mode with a tall image writes each resized frame into a strided column band of the output."""
    frames = RNG.integers(0, 256, size=(3, 64, 32), dtype=np.uint8)
    out = resize_stack(frames, ResizeConfig(size=16))
    for i in range(3):
        expect = np.zeros((16, 16), np.uint8)
        expect[:, 4:12] = cv2.resize(frames[i], (8, 16), interpolation=cv2.INTER_AREA)
        assert np.array_equal(out[i], expect)
    # 4x area down-sampling is the 4x4 block mean (independent reference), rounded
    blocks = frames.reshape(3, 16, 4, 8, 4).mean(axis=(2, 4))
    assert np.abs(out[:, :, 4:12].astype(float) - blocks).max() <= 0.5 + 1e-9


def test_crop_resize_rejects_wrong_shape():
    from sonoshift.errors import SonoshiftError

    crop = crop_from_mask(np.ones((10, 10), bool))
    with pytest.raises(SonoshiftError, match="crop made for 10x10"):
        crop_resize_stack(np.zeros((2, 12, 10), np.uint8), crop, ResizeConfig(size=8))
