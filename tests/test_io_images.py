"""io/images.py, io/labels.py, io/suffixes.py: the one reader and writer per format, checked against independent
encoders/decoders (OpenCV writes what we read, PIL decodes what we write) and hand-computed pixel values."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sonoshift.data.readers import read_stack
from sonoshift.data.spec import spec_from_folders
from sonoshift.errors import SonoshiftError
from sonoshift.io.images import read_gray, read_image_pages, write_png
from sonoshift.io.labels import read_labels, write_labels
from sonoshift.io.suffixes import SUPPORTED_SUFFIXES, VIDEO_SUFFIXES
from sonoshift.io.video import write_mp4

RNG = np.random.default_rng(7)


def test_read_gray_8bit_equals_what_opencv_wrote(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (17, 23), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), arr)
    got = read_gray(tmp_path / "g.png")
    assert got.dtype == np.uint8 and got.shape == (17, 23)
    np.testing.assert_array_equal(got, arr)


def test_read_gray_colour_is_bt601_luma_with_known_values(tmp_path: Path) -> None:
    # 0.299 R + 0.587 G + 0.114 B, rounded half up, by hand: red 76.245 -> 76, green 149.685 -> 150,
    # blue 29.07 -> 29, (10, 20, 30) 18.15 -> 18, white 255, (100, 100, 100) 100.
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [255, 255, 255], [100, 100, 100]]],
                   np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "c.png"), [[76, 150, 29], [18, 255, 100]])
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.bmp")
    np.testing.assert_array_equal(read_stack(tmp_path / "c.bmp").frames[0], [[76, 150, 29], [18, 255, 100]])


def test_one_policy_for_16bit_and_alpha(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((4, 4), 1000, np.uint16))
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "alpha.png")
    for reader in (read_gray, read_image_pages, read_stack):
        with pytest.raises(SonoshiftError, match=r"deep\.png.*16-bit"):
            reader(tmp_path / "deep.png")
        with pytest.raises(SonoshiftError, match=r"alpha\.png.*alpha"):
            reader(tmp_path / "alpha.png")
    with pytest.raises(SonoshiftError, match=r"deep\.png.*not 8-bit"):
        read_labels(tmp_path / "deep.png")
    with pytest.raises(SonoshiftError, match="missing.png"):
        read_gray(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(SonoshiftError, match="junk.png"):
        read_gray(tmp_path / "junk.png")


def test_multipage_tiff_gives_one_frame_per_page(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((5, 6), v, np.uint8)) for v in (3, 9, 250)]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    got = read_image_pages(tmp_path / "m.tif")
    assert got.shape == (3, 5, 6) and got[:, 0, 0].tolist() == [3, 9, 250]
    assert read_gray(tmp_path / "m.tif").tolist() == np.full((5, 6), 3).tolist()  # first page


def test_write_png_round_trip_decoded_by_pil(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
    write_png(tmp_path / "sub" / "a.png", arr)
    with Image.open(tmp_path / "sub" / "a.png") as im:
        assert im.mode == "L" and im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), arr)
    rgb = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    write_png(tmp_path / "bgr.png", rgb[..., ::-1], bgr=True)
    for name in ("rgb.png", "bgr.png"):
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), rgb)
    write_png(tmp_path / "wide.png", np.array([[0, 255]], np.int64), level=9, atomic=False)  # lossless cast
    assert np.asarray(Image.open(tmp_path / "wide.png")).tolist() == [[0, 255]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgr.png", "rgb.png", "sub", "wide.png"]  # no temp left


def test_write_png_refuses_what_it_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0..255"):
        write_png(tmp_path / "x.png", np.array([[0, 256]], np.uint16))
    with pytest.raises(ValueError, match="dtype"):
        write_png(tmp_path / "x.png", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_labels_keep_class_ids(tmp_path: Path) -> None:
    ids = RNG.integers(0, 7, (6, 8), dtype=np.uint8)
    pal = Image.fromarray(ids, "P")  # a palette PNG: the stored indices are the ids, not their colours
    pal.putpalette([255, 0, 0, 0, 255, 0] * 128)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "p.png"), ids)
    Image.fromarray(np.repeat(ids[..., None], 3, axis=2), "RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "rgb.png"), ids)  # RGB mask: first channel
    np.save(tmp_path / "l.npy", ids.astype(np.int64))
    np.testing.assert_array_equal(read_labels(tmp_path / "l.npy"), ids)
    np.save(tmp_path / "big.npy", np.full((2, 2), 300, np.int64))
    with pytest.raises(SonoshiftError, match="big.npy"):
        read_labels(tmp_path / "big.npy")
    write_labels(tmp_path / "w.png", ids)
    with Image.open(tmp_path / "w.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), ids)


def test_spec_and_readers_agree_on_suffixes(tmp_path: Path) -> None:
    """Every suffix the spec collects is one read_stack dispatches (never "unsupported type"); .m4v reads."""
    for suffix in sorted(SUPPORTED_SUFFIXES):
        f = tmp_path / "probe" / f"x{suffix}"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"garbage")
        with pytest.raises(SonoshiftError) as e:
            read_stack(f)
        assert "unsupported type" not in str(e.value), suffix
        f.unlink()
    frames = RNG.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    dom = tmp_path / "cart"
    dom.mkdir()
    write_mp4(dom / "Patient01_clip.m4v", frames, fps=10)
    assert ".m4v" in VIDEO_SUFFIXES
    spec = spec_from_folders([dom, _other_domain(tmp_path)])
    item = next(it for it in spec.items if it.path.suffix == ".m4v")
    stack = read_stack(item.path)
    assert stack.frames.shape == (3, 16, 16) and stack.meta["kind"] == "video"


def _other_domain(tmp_path: Path) -> Path:
    d = tmp_path / "handheld"
    d.mkdir()
    cv2.imwrite(str(d / "Patient02.png"), np.zeros((8, 8), np.uint8))
    return d
