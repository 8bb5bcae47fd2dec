"""Field-of-view crop: synthetic frames with a known field of view, hand-computed crops, and real data.

"Did not survive" is measured as: no pixel of a hand-annotated overlay box (tests/data/overlay_boxes.csv: burned-in
text, logos, bars, the screen capture's ID and date/time) is inside the kept mask. Since apply_crop sets every
pixel outside the mask to 0, an overlay outside the mask cannot appear in the cropped output. "Covers the
anatomy" is measured as the kept fraction of a hand-annotated anatomy box (>= 0.95) or of the HC18 head masks.
"""

from __future__ import annotations

import csv
import functools
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion
from skimage.morphology import convex_hull_image

from sonoshift.config import load_config
from sonoshift.data.crop import CropConfig, CropResult, apply_crop, crop_from_mask, find_fov, save_crop_debug
from sonoshift.data.crop.video import change_range, sample_indices
from sonoshift.data.readers import read_stack
from sonoshift.errors import SonoshiftError

BOXES = Path(__file__).parent / "data" / "overlay_boxes.csv"


def sector_mask(h: int, w: int) -> np.ndarray:
    """A convex-probe fan: apex above the frame, radii 0.35h..1.05h, +-32 degrees (bool (h, w))."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    cy, cx = -0.25 * h, w / 2
    r = np.hypot(yy - cy, xx - cx)
    theta = np.degrees(np.arctan2(xx - cx, yy - cy))
    return (r > 0.35 * h) & (r < 1.05 * h) & (np.abs(theta) < 32)


def inner(mask: np.ndarray) -> np.ndarray:
    """The mask without its 2-px rim (the crop erodes its edge by ``margin`` = 1 px by design)."""
    return binary_erosion(mask, iterations=2)


def speckle(rng: np.random.Generator, shape, lo: int, hi: int) -> np.ndarray:
    return rng.integers(lo, hi, size=shape).astype(np.uint8)


def synthetic_sector_frame(seed: int = 0, h: int = 160, w: int = 200):
    """Sector of speckle on black, anechoic fluid touching its edge, text + logo + grey bar in the margins."""
    rng = np.random.default_rng(seed)
    sector = sector_mask(h, w)
    frame = np.where(sector, speckle(rng, (h, w), 30, 220), 0).astype(np.uint8)
    # anechoic fluid (values 0..2) reaching the left sector edge: leaves a notch that the hull must restore
    # (limit: fluid that cuts off a whole corner of the fan takes that corner with it)
    yy, xx = np.mgrid[0:h, 0:w]
    fluid = ((yy - 0.45 * h) ** 2 / (0.08 * h) ** 2 + (xx - 0.22 * w) ** 2 / (0.16 * w) ** 2) < 1
    frame[fluid & sector] = rng.integers(0, 3, size=int((fluid & sector).sum()))
    overlay = np.zeros((h, w), np.uint8)
    cv2.putText(overlay, "ID 4711", (2, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
    cv2.putText(overlay, "12:34", (w - 42, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
    overlay[h - 14 : h - 6, w - 14 : w - 6] = 200  # small logo square
    overlay[sector] = 0  # the margins' overlays stay out of the sector
    overlay[40:100, 0:4] = np.linspace(255, 20, 60).astype(np.uint8)[:, None]  # grey bar at the edge
    frame = np.maximum(frame, overlay)
    return frame, sector, overlay > 0


# ------------------------------------------------------------------------------------------------ single images


def test_image_sector_found_and_overlays_dropped():
    frame, sector, overlay = synthetic_sector_frame()
    crop = find_fov(frame)
    assert crop.method == "image"
    # the fan is kept (notch of fluid included); nothing beyond its convex hull (scikit-image reference) is
    assert crop.full_mask[inner(sector)].mean() > 0.99
    assert not (crop.full_mask & ~convex_hull_image(sector)).any()
    assert not (crop.full_mask & overlay).any()
    out = apply_crop(frame[None], crop)
    y0, y1, x0, x1 = crop.bbox
    assert out.shape == (1, y1 - y0, x1 - x0)
    assert (out[0][~crop.mask] == 0).all()
    assert np.array_equal(out[0][crop.mask], frame[y0:y1, x0:x1][crop.mask])


def _image_filling_frame(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    """A zoomed image: speckle (50..130) over the whole frame, as when the sector reaches every edge."""
    return speckle(np.random.default_rng(seed), (h, w), 50, 130)


def _draw_text_block(frame: np.ndarray, x: int, y: int, value: int, shadow: bool) -> np.ndarray:
    """Three lines of vendor-style text at (x, y); returns the bool mask of the drawn pixels (shadow included)."""
    ink = np.zeros(frame.shape, np.uint8)
    for i, line in enumerate(("2.Trim", "Gn -4", "C6/M7")):
        cv2.putText(ink, line, (x, y + 11 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.33, 255, 1)
    drawn = ink > 0
    if shadow:  # Voluson-style black drop shadow
        shade = np.zeros_like(drawn)
        shade[1:, 1:] = drawn[:-1, :-1]
        frame[shade & ~drawn] = 0
        drawn |= shade
    frame[ink > 0] = value
    return drawn


@pytest.mark.parametrize("value,shadow", [(170, True), (255, False)])
def test_text_over_the_image_is_cut_out(value, shadow):
    frame = _image_filling_frame(1)
    text = _draw_text_block(frame, 255, 12, value, shadow)
    crop = find_fov(frame)
    assert not (crop.full_mask & text).any()
    assert crop.full_mask.mean() > 0.9  # only the text block goes


def test_grey_bar_over_the_image_is_cut_out():
    frame = _image_filling_frame(2)
    frame[30:100, 0:8] = np.linspace(255, 16, 70).astype(np.uint8)[:, None]
    crop = find_fov(frame)
    assert not crop.full_mask[30:100, 0:8].any()
    assert crop.full_mask.mean() > 0.9


def test_blank_frame_is_an_error():
    with pytest.raises(SonoshiftError, match=r"blank\.png: no ultrasound field of view"):
        find_fov(np.zeros((64, 64), np.uint8), name="blank.png")


def test_bad_frames_are_an_error():
    with pytest.raises(SonoshiftError, match="uint8"):
        find_fov(np.zeros((2, 8, 8), np.float32))


def test_method_none_keeps_everything():
    frame = np.zeros((10, 12), np.uint8)
    crop = find_fov(frame, config=CropConfig(method="none"))
    assert crop.bbox == (0, 10, 0, 12) and crop.full_mask.all() and crop.method == "none"


# ------------------------------------------------------------------------------------------------ video


def synthetic_video(seed: int = 0, t: int = 10, h: int = 96, w: int = 128):
    """Live rectangle of changing speckle, static text and logo, a blinking counter far from the image."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((t, h, w), np.uint8)
    cv2.putText(frames[0], "ID 0815 2021", (2, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, 220, 1)
    frames[0, 4:12, w - 12 : w - 4] = 150  # logo
    frames[:] = frames[0]
    live = np.zeros((h, w), bool)
    live[20:90, 30:100] = True
    frames[:, live] = rng.integers(10, 200, size=(t, int(live.sum())))
    frames[::2, 88:93, 112:124] = 255  # blinking frame counter: changes, but is small and apart
    static = frames[0] > 0
    static[20:90, 30:100] = False
    return frames, live, static


def test_video_mask_is_the_changing_region():
    frames, live, static = synthetic_video()
    crop = find_fov(frames)
    assert crop.method == "video"
    assert not (crop.full_mask & ~live).any()  # nothing outside the live image: no text, logo or counter
    assert crop.full_mask[live].mean() > 0.9
    assert not crop.full_mask[88:93, 112:124].any()
    out = apply_crop(frames, crop)
    assert out.shape[0] == frames.shape[0]
    assert (out[:, ~crop.mask] == 0).all()


def test_static_stack_falls_back_to_image_method():
    frame, sector, _ = synthetic_sector_frame(seed=3)
    crop = find_fov(np.stack([frame] * 4))
    assert crop.method == "image"
    assert crop.full_mask[inner(sector)].mean() > 0.99
    assert not (crop.full_mask & ~convex_hull_image(sector)).any()


def test_forced_image_method_on_video_uses_max_projection():
    frames, live, _ = synthetic_video(seed=1)
    crop = find_fov(frames, config=CropConfig(method="image", remove_text=False))
    assert crop.method == "image"
    assert crop.full_mask[live].mean() > 0.9


def test_sample_indices_and_change_range():
    idx = sample_indices(100, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 99 and (np.diff(idx) > 0).all()
    assert np.array_equal(sample_indices(5, 32), np.arange(5))
    frames = np.random.default_rng(0).integers(0, 256, size=(7, 4, 5), dtype=np.uint8)
    expected = frames.max(0).astype(int) - frames.min(0)
    assert np.array_equal(change_range(frames, 32), expected)


# ------------------------------------------------------------------------------------------------ apply / debug


def test_crop_from_mask_and_apply_crop_by_hand():
    mask = np.zeros((5, 6), bool)
    mask[1, 2] = mask[2, 1:4] = mask[3, 2] = True  # a plus sign, bbox rows 1..3, cols 1..3
    crop = crop_from_mask(mask)
    assert crop.bbox == (1, 4, 1, 4)
    assert np.array_equal(crop.mask, mask[1:4, 1:4])
    frames = np.arange(2 * 5 * 6).reshape(2, 5, 6)
    out = apply_crop(frames, crop, fill=-1)
    expected0 = np.array([[-1, 8, -1], [13, 14, 15], [-1, 20, -1]])
    assert np.array_equal(out[0], expected0)
    assert np.array_equal(out[1], expected0 + 30 * (expected0 >= 0))
    assert np.array_equal(apply_crop(frames[0], crop, fill=-1), expected0)  # one (H, W) frame
    labels = np.ones((2, 5, 6), np.uint8)
    assert apply_crop(labels, crop).sum() == 2 * 5  # aligned label stack: 5 kept pixels per frame
    with pytest.raises(SonoshiftError, match="cannot apply a crop"):
        apply_crop(np.zeros((2, 5, 7)), crop)


def test_save_crop_debug(tmp_path):
    frame, _, _ = synthetic_sector_frame()
    crop = find_fov(frame)
    path = tmp_path / "dbg" / "crop.png"
    save_crop_debug(frame, crop, path)
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == frame.shape + (3,)
    green = (img[..., 1] == 255) & (img[..., 0] == 0) & (img[..., 2] == 0)
    red = (img[..., 0] == 255) & (img[..., 1] == 0) & (img[..., 2] == 0)
    assert green.any() and red.any()
    y0, y1, x0, x1 = crop.bbox
    assert red[y0, x0] and red[y1 - 1, x1 - 1]  # bbox corners
    assert [p.name for p in path.parent.iterdir()] == ["crop.png"]  # no temporary file left behind


def test_config_from_overrides():
    cfg = load_config(CropConfig, None, ["method=image", "open_radius=0.02", "remove_text=false"])
    assert cfg.method == "image" and cfg.open_radius == 0.02 and cfg.remove_text is False
    with pytest.raises(SonoshiftError, match="method"):
        load_config(CropConfig, None, ["method=magic"])


def test_deterministic():
    frame, _, _ = synthetic_sector_frame(seed=5)
    a, b = find_fov(frame), find_fov(frame.copy())
    assert a.bbox == b.bbox and np.array_equal(a.full_mask, b.full_mask)
    assert isinstance(a, CropResult)


# ------------------------------------------------------------------------------------------------ real data


def _boxes() -> dict[str, list[dict[str, str]]]:
    rows = csv.DictReader(line for line in BOXES.read_text().splitlines() if not line.startswith("#"))
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        out[row["path"]].append(row)
    return dict(out)


@functools.lru_cache(maxsize=1)
def _read_and_crop(path: Path):
    """Read and crop one real item (cached: the screen capture is used by two tests)."""
    stack = read_stack(path)
    return stack, find_fov(stack.frames, name=path.name)


@pytest.mark.parametrize("rel", sorted(_boxes()))
def test_real_overlays_do_not_survive(shared_data, rel):
    stack, crop = _read_and_crop(shared_data / rel)
    out = apply_crop(stack.frames, crop)
    assert (out[:, ~crop.mask] == 0).all()
    for box in _boxes()[rel]:
        y0, y1, x0, x1 = (int(box[k]) for k in ("y0", "y1", "x0", "x1"))
        kept = crop.full_mask[y0:y1, x0:x1]
        if box["kind"] == "overlay":
            assert not kept.any(), f"{box['what']} survives the crop ({int(kept.sum())} pixels)"
        else:
            assert kept.mean() >= 0.95, f"only {kept.mean():.1%} of the {box['what']} is kept"


def test_real_screen_capture_live_image(shared_data):
    """The crop of the screen capture is the live image: it changes over time, and the static UI is gone."""
    stack, crop = _read_and_crop(shared_data / "lung_videos/screen_capture/linear_probe_screen_capture.mp4")
    assert crop.method == "video"
    out = apply_crop(stack.frames, crop)
    changing = (out.max(0).astype(int) - out.min(0)) > 8
    assert changing[crop.mask].mean() > 0.3  # a live image, not a static panel
    y0, y1, x0, x1 = crop.bbox
    assert 80 < x1 - x0 < 400 and y1 - y0 > 200  # the linear-probe image, not the whole 1280x720 screen
    outside = np.ones(stack.frames.shape[1:], bool)
    outside[y0:y1, x0:x1] = False
    assert stack.frames[:, outside].max() > 200  # bright UI text existed outside the crop ...
    assert out[:, ~crop.mask].max() == 0  # ... and nothing outside the mask is kept


def test_real_hc18_heads_kept(shared_data):
    heads = sorted((shared_data / "hc18/training_set").glob("*HC.png"))[::25]
    for path in heads:
        crop = find_fov(read_stack(path).frames)
        head = np.asarray(Image.open(path.with_name(path.stem + "_Annotation.png")).convert("L")) > 127
        assert crop.full_mask[head].mean() > 0.99, path.name


@pytest.mark.slow
def test_real_every_frame_crops(shared_data):
    """Every real frame of both fetal datasets gets a field of view of a plausible size."""
    import pandas as pd

    fp = pd.read_csv(shared_data / "fetal_planes_db/index.csv")
    af = pd.read_csv(shared_data / "african_planes/African_train.csv")
    paths = [shared_data / "fetal_planes_db" / p for p in fp["path"]]
    paths += [shared_data / "african_planes/images" / f"{n}.png" for n in af["Image_name"]]
    for path in paths:
        frames = read_stack(path).frames
        crop = find_fov(frames, name=path.name)
        assert crop.full_mask.mean() > 0.25, path.name  # Egypt frames are pre-cropped: up to the whole frame
        assert (apply_crop(frames, crop)[:, ~crop.mask] == 0).all()


# ------------------------------------------------------------------------------------------------ morphology


def test_morphology_against_scipy_and_skimage():
    from scipy import ndimage as ndi

    from sonoshift.data.crop import morphology as morph

    rng = np.random.default_rng(7)
    mask = ndi.binary_opening(rng.random((60, 80)) > 0.45, iterations=1)
    mask[20:40, 30:50] = True
    mask[28:32, 38:42] = False  # a hole inside the big component
    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    sizes = ndi.sum(mask, labels, range(1, n + 1))
    biggest = labels == 1 + int(np.argmax(sizes))
    assert np.array_equal(morph.largest_filled(mask), ndi.binary_fill_holes(biggest))
    hull = morph.convex_hull(biggest)
    reference = convex_hull_image(biggest)  # differs only in how edge pixels are rasterized
    assert hull[biggest].all()
    assert (hull & reference).sum() / (hull | reference).sum() > 0.97
    assert morph.radius_px(0.01, (720, 1280)) == 7 and morph.radius_px(0.0, (10, 10)) == 0
