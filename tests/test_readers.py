"""Readers: every input kind against the array that was written, and every bad input gives one clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from sonoshift.data.readers import FrameStack, read_stack
from sonoshift.io.images import luminance
from sonoshift.io.video import iter_video_frames
from sonoshift.errors import SonoshiftError

RNG = np.random.default_rng(0)


def ref_luma(rgb: np.ndarray) -> np.ndarray:
    """Independent BT.601 luma: float weights, rounded half up."""
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.floor(y + 0.5 + 1e-9).astype(np.uint8)


def smooth_stack(t: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """A moving gradient: compresses well, so lossy codecs stay close to it."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([((xx * 4 + yy * 2 + 9 * k) % 200 + 20).astype(np.uint8) for k in range(t)])


def write_video(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fps: int = 10, options=None) -> None:
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if codec == "libx264":
            stream.options = {"qp": "0", "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="gray")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


# ------------------------------------------------------------------------------------------------ video


def test_mp4_h264(tmp_path):
    frames = smooth_stack()
    path = tmp_path / "clip.mp4"
    write_video(path, frames, "libx264", "yuv420p")
    st = read_stack(path)
    assert isinstance(st, FrameStack)
    assert st.frames.dtype == np.uint8 and st.frames.shape == frames.shape
    assert st.fps == pytest.approx(10.0)
    assert st.patient_id is None and st.source == path and st.meta["codec"] == "h264"
    # qp=0 is lossless in YUV; only the limited-range gray<->YUV round trip rounds (at most 1 level).
    assert np.abs(st.frames.astype(int) - frames).max() <= 1
    streamed = np.stack(list(iter_video_frames(path)))
    assert np.array_equal(streamed, st.frames)


@pytest.mark.parametrize("suffix,codec", [(".avi", "ffv1"), (".mkv", "ffv1"), (".mov", "png")])
def test_lossless_containers_exact(tmp_path, suffix, codec):
    frames = RNG.integers(0, 256, size=(5, 16, 24), dtype=np.uint8)
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames, codec, "gray", fps=25)
    st = read_stack(path)
    assert np.array_equal(st.frames, frames)
    assert st.fps == pytest.approx(25.0)


def test_truncated_mp4_moov_at_end(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, smooth_stack(t=20), "libx264", "yuv420p")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SonoshiftError, match="clip.mp4"):
        read_stack(path)


def test_truncated_mp4_faststart(tmp_path):
    """With the index first, truncation leaves an openable file that ends early: still an error."""
    path = tmp_path / "clip.mp4"
    frames = RNG.integers(0, 256, size=(20, 32, 48), dtype=np.uint8)  # noise: large frames, many bytes each
    write_video(path, frames, "libx264", "yuv420p", options={"movflags": "faststart"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SonoshiftError, match="clip.mp4.*(truncated|corrupt)"):
        read_stack(path)


def test_garbage_video(tmp_path):
    path = tmp_path / "junk.avi"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SonoshiftError, match="junk.avi"):
        read_stack(path)


# ------------------------------------------------------------------------------------------------ DICOM


def make_dicom(arr: np.ndarray, photometric: str, *, frames: int = 1, bits: int = 8, **extra) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    spp = 3 if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") else 1
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = photometric
    if spp == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = arr.shape[-3 if spp == 3 else -2], arr.shape[-2 if spp == 3 else -1]
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = arr.tobytes()
    return ds


def save_dicom(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_single_frame_mono2(tmp_path):
    arr = RNG.integers(0, 256, size=(12, 20), dtype=np.uint8)
    path = save_dicom(make_dicom(arr, "MONOCHROME2", PatientID="P007"), tmp_path / "a.dcm")
    st = read_stack(path)
    assert st.frames.shape == (1, 12, 20) and np.array_equal(st.frames[0], arr)
    assert st.patient_id == "P007" and st.fps is None
    assert st.meta["modality"] == "US" and st.meta["photometric"] == "MONOCHROME2"


def test_dicom_multi_frame_fps_and_no_suffix(tmp_path):
    arr = RNG.integers(0, 256, size=(4, 10, 14), dtype=np.uint8)
    path = save_dicom(make_dicom(arr, "MONOCHROME2", frames=4, FrameTime=40.0), tmp_path / "IM0001")
    st = read_stack(path)  # no suffix: recognised by the DICM preamble
    assert np.array_equal(st.frames, arr)
    assert st.fps == pytest.approx(25.0)
    assert st.patient_id is None


def test_dicom_monochrome1_inverted(tmp_path):
    arr = RNG.integers(0, 256, size=(2, 6, 8), dtype=np.uint8)
    path = save_dicom(make_dicom(arr, "MONOCHROME1", frames=2, CineRate=30), tmp_path / "m1.dcm")
    st = read_stack(path)
    assert np.array_equal(st.frames, 255 - arr)
    assert st.fps == 30.0


def test_dicom_rgb_multi_frame(tmp_path):
    rgb = RNG.integers(0, 256, size=(3, 8, 10, 3), dtype=np.uint8)
    path = save_dicom(make_dicom(rgb, "RGB", frames=3), tmp_path / "rgb.dcm")
    st = read_stack(path)
    assert np.array_equal(st.frames, ref_luma(rgb))


def _ybr(rgb: np.ndarray) -> np.ndarray:
    """RGB -> YBR_FULL (DICOM PS3.3 C.7.6.3.1.2), rounded, float math independent of the reader."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.clip(np.floor(np.stack([y, cb, cr], -1) + 0.5), 0, 255).astype(np.uint8)


def _muted_rgb(shape) -> np.ndarray:
    """Greyish colours (chroma small) so that YBR -> RGB never clips and luma survives the round trip."""
    grey = RNG.integers(40, 216, size=shape[:-1] + (1,))
    return (grey + RNG.integers(-20, 21, size=shape)).astype(np.uint8)


def test_dicom_ybr_full(tmp_path):
    rgb = _muted_rgb((2, 6, 8, 3))
    ybr = _ybr(rgb)
    path = save_dicom(make_dicom(ybr, "YBR_FULL", frames=2), tmp_path / "ybr.dcm")
    st = read_stack(path)
    # luma of the decoded RGB equals the stored Y up to the two roundings of the colour conversion
    assert np.abs(st.frames.astype(int) - ybr[..., 0]).max() <= 1


def test_dicom_ybr_full_422(tmp_path):
    rgb = _muted_rgb((2, 6, 8, 3))
    ybr = _ybr(rgb)
    # 4:2:2 packing: for each horizontal pixel pair, Y1 Y2 Cb Cr (chroma of the pair averaged)
    y = ybr[..., 0].reshape(2, 6, 4, 2)
    cb = ybr[..., 1].reshape(2, 6, 4, 2).mean(-1).round().astype(np.uint8)
    cr = ybr[..., 2].reshape(2, 6, 4, 2).mean(-1).round().astype(np.uint8)
    packed = np.concatenate([y, cb[..., None], cr[..., None]], -1)  # (2, 6, 4, 4)
    ds = make_dicom(ybr, "YBR_FULL_422", frames=2)
    ds.PixelData = packed.tobytes()
    st = read_stack(save_dicom(ds, tmp_path / "ybr422.dcm"))
    assert st.frames.shape == (2, 6, 8)
    assert np.abs(st.frames.astype(int) - ybr[..., 0]).max() <= 1


def test_dicom_palette_color(tmp_path):
    idx = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)
    levels = np.arange(256, dtype=np.uint16)
    red, green, blue = levels * 257, (255 - levels) * 257, (levels // 2) * 257  # 16-bit LUT entries
    ds = make_dicom(idx, "PALETTE COLOR")
    for name, lut in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", lut.astype("<u2").tobytes())
    st = read_stack(save_dicom(ds, tmp_path / "pal.dcm"))
    rgb = np.stack([idx, 255 - idx, idx // 2], -1)
    assert np.array_equal(st.frames[0], ref_luma(rgb))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_dicom_compressed(tmp_path, syntax):
    arr = RNG.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)  # openjpeg refuses images under 32 px
    ds = make_dicom(arr, "MONOCHROME2", frames=3)
    try:
        ds.compress(syntax, arr)
    except Exception as e:  # an encoder plug-in may be missing; decoding is what we test
        pytest.skip(f"pydicom cannot encode {syntax.name} here: {e}")
    path = save_dicom(ds, tmp_path / "c.dcm")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    st = read_stack(path)
    assert np.array_equal(st.frames, arr)


def test_dicom_without_pixel_data(tmp_path):
    ds = make_dicom(np.zeros((2, 2), np.uint8), "MONOCHROME2")
    del ds.PixelData
    path = save_dicom(ds, tmp_path / "nopix.dcm")
    with pytest.raises(SonoshiftError, match=r"nopix\.dcm has no pixel data"):
        read_stack(path)


def test_dicom_16bit_rejected(tmp_path):
    arr = RNG.integers(0, 4096, size=(4, 4)).astype("<u2")
    path = save_dicom(make_dicom(arr, "MONOCHROME2", bits=12), tmp_path / "ct.dcm")
    with pytest.raises(SonoshiftError, match=r"ct\.dcm has 12-bit samples"):
        read_stack(path)


def test_dicom_corrupt(tmp_path):
    path = tmp_path / "bad.dcm"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(SonoshiftError, match=r"bad\.dcm"):
        read_stack(path)


# ------------------------------------------------------------------------------------------------ images


def test_png_gray_exact(tmp_path):
    arr = RNG.integers(0, 256, size=(9, 13), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png")
    st = read_stack(tmp_path / "g.png")
    assert st.frames.shape == (1, 9, 13) and np.array_equal(st.frames[0], arr) and st.fps is None


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_rgb_image_to_luma(tmp_path, suffix):
    rgb = RNG.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / f"c{suffix}")
    st = read_stack(tmp_path / f"c{suffix}")
    assert np.array_equal(st.frames[0], ref_luma(rgb))


def test_jpeg_close_to_source(tmp_path):
    arr = smooth_stack(t=1, h=32, w=32)[0]
    Image.fromarray(arr).save(tmp_path / "j.jpg", quality=95)
    st = read_stack(tmp_path / "j.jpg")
    assert st.frames.shape == (1, 32, 32)
    assert np.abs(st.frames[0].astype(int) - arr).mean() < 2.0


def test_luminance_matches_reference():
    rgb = RNG.integers(0, 256, size=(1000, 3), dtype=np.uint8)
    assert np.array_equal(luminance(rgb), ref_luma(rgb))
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
    assert np.array_equal(luminance(grey), np.arange(256))  # grey stored as RGB is unchanged


def test_png_16bit_rejected(tmp_path):
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(SonoshiftError, match=r"deep\.png has 16-bit samples"):
        read_stack(tmp_path / "deep.png")


def test_png_rgba_rejected(tmp_path):
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "alpha.png")
    with pytest.raises(SonoshiftError, match=r"alpha\.png has an alpha channel"):
        read_stack(tmp_path / "alpha.png")


def test_truncated_png(tmp_path):
    Image.fromarray(RNG.integers(0, 256, size=(64, 64), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SonoshiftError, match=r"t\.png cannot be read"):
        read_stack(tmp_path / "t.png")


# ------------------------------------------------------------------------------------------------ folders


def test_folder_natural_order(tmp_path):
    frames = RNG.integers(0, 256, size=(11, 5, 6), dtype=np.uint8)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"frame{i + 1}.png")  # frame10 must come after frame9
    (tmp_path / "notes.txt").write_text("ignored")
    st = read_stack(tmp_path)
    assert np.array_equal(st.frames, frames)
    assert st.meta["files"][:3] == ["frame1.png", "frame2.png", "frame3.png"]


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(SonoshiftError, match="holds no image frames"):
        read_stack(tmp_path)


def test_folder_mixed_sizes(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a1.png")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "a2.png")
    with pytest.raises(SonoshiftError, match=r"a2\.png is 5x4"):
        read_stack(tmp_path)


# ------------------------------------------------------------------------------------------------ numpy


@pytest.mark.parametrize("shape", [(6, 7), (3, 6, 7)])
def test_npy_gray(tmp_path, shape):
    arr = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    np.save(tmp_path / "s.npy", arr)
    st = read_stack(tmp_path / "s.npy")
    assert np.array_equal(st.frames, arr.reshape((-1, 6, 7)))


def test_npy_rgb_and_lossless_int(tmp_path):
    rgb = RNG.integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    assert np.array_equal(read_stack(tmp_path / "rgb.npy").frames, ref_luma(rgb))
    labels = RNG.integers(0, 9, size=(2, 4, 5)).astype(np.int64)
    np.save(tmp_path / "labels.npy", labels)
    st = read_stack(tmp_path / "labels.npy")
    assert st.frames.dtype == np.uint8 and np.array_equal(st.frames, labels)
    assert st.meta["original_dtype"] == "int64"


@pytest.mark.parametrize(
    "arr,msg",
    [
        (np.full((2, 3, 3), 300, np.uint16), "outside 0..255"),
        (np.zeros((2, 3, 3), np.float32), "dtype float32"),
        (np.zeros((2, 3, 3, 4), np.uint8), "RGBA"),
        (np.zeros((3,), np.uint8), "has shape"),
        (np.zeros((0, 3, 3), np.uint8), "empty array"),
    ],
)
def test_npy_bad(tmp_path, arr, msg):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(SonoshiftError, match=msg):
        read_stack(tmp_path / "bad.npy")


# ------------------------------------------------------------------------------------------------ paths


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(SonoshiftError, match=r"nothere\.mp4 does not exist"):
        read_stack(tmp_path / "nothere.mp4")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(SonoshiftError, match=r"x\.txt has an unsupported type"):
        read_stack(tmp_path / "x.txt")


def test_real_screen_capture(shared_data):
    path = shared_data / "lung_videos/screen_capture/linear_probe_screen_capture.mp4"
    st = read_stack(path)
    assert st.frames.shape == (164, 720, 1280) and st.frames.dtype == np.uint8
    assert 15.0 < st.fps < 17.5


def test_real_egypt_rgb(shared_data, tmp_path):
    path = next(iter(sorted((shared_data / "african_planes/images").glob("*EGY*.png"))))
    rgb = np.asarray(Image.open(path).convert("RGB"))
    st = read_stack(path)
    assert np.array_equal(st.frames[0], ref_luma(rgb))
    shutil.copy(path, tmp_path / "frame1.png")  # a copy in tmp only, to exercise the folder reader on it
    assert np.array_equal(read_stack(tmp_path).frames, st.frames)
