"""Head ellipse fit from probability maps: exact perimeters on drawn ellipses, border-cut heads, calibration."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.judges.ga.head_fit import calibrate_offset, fit_head


def drawn(shape, cx, cy, a, b, angle, upsample=8):
    """Anti-aliased filled ellipse as a float map in [0, 1] (area coverage per pixel) at ``shape``."""
    h, w = shape
    big = np.zeros((h * upsample, w * upsample), np.uint8)
    s = upsample
    # native pixel i covers big pixels [i s, (i + 1) s): native coordinate c is big coordinate c s + (s - 1) / 2
    box = ((cx * s + (s - 1) / 2, cy * s + (s - 1) / 2), (2 * a * s, 2 * b * s), angle)
    cv2.ellipse(big, box, 255, -1)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0])
def test_fit_recovers_perimeter_at_native_size(angle):
    prob = drawn((200, 260), 130.3, 95.7, 80.0, 60.0, angle)
    fit = fit_head(prob, prob.shape)
    assert fit.found
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(80, 60), rel=0.003)
    assert (fit.ellipse.cx, fit.ellipse.cy) == pytest.approx((130.3, 95.7), abs=0.3)


def test_fit_from_model_size_map_measures_native_pixels():
    # a 540x800 frame seen through a 128x128 map (stretched), as the estimator does
    native = drawn((540, 800), 400.0, 270.0, 250.0, 180.0, 20.0, upsample=2)
    small = cv2.resize(native, (128, 128), interpolation=cv2.INTER_AREA)
    fit = fit_head(small, native.shape)
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(250, 180), rel=0.005)


def test_head_cut_by_the_border_keeps_its_true_ellipse():
    prob = drawn((200, 200), 100.0, 40.0, 90.0, 70.0, 0.0)  # top ~30 px of the head lie outside the image
    fit = fit_head(prob, prob.shape)
    assert fit.border_fraction > 0.05
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(90, 70), rel=0.01)


def test_amodal_fit_on_a_canvas_uses_the_head_beyond_the_border():
    # a 200 x 200 frame whose head (centre y 40, semi-axes 90 x 70) runs 30 px above the top border; an amodal
    # network's map of the frame on a canvas padded by 50 px on each side draws the whole head
    canvas = drawn((300, 300), 150.0, 90.0, 90.0, 70.0, 0.0)
    small = cv2.resize(canvas, (128, 128), interpolation=cv2.INTER_AREA)
    fit = fit_head(small, (200, 200), pad=(50, 50), amodal=True)
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(90, 70), rel=0.005)
    assert (fit.ellipse.cx, fit.ellipse.cy) == pytest.approx((100.0, 40.0), abs=0.5)
    # the share of the outline at or beyond the border (within 4 model pixels of it: above the top, and the right
    # flank at x 190), by arc length
    t = np.linspace(0, 2 * np.pi, 20001)[:-1]
    x, y = 100 + 90 * np.cos(t), 40 + 70 * np.sin(t)
    seg = np.hypot(np.diff(x, append=x[0]), np.diff(y, append=y[0]))
    m = 4 * 300 / 128
    out = (y <= m) | (x <= m) | (x >= 199 - m) | (y >= 199 - m)
    assert fit.border_fraction == pytest.approx(seg[out].sum() / seg.sum(), abs=0.02)


def test_largest_component_only_and_empty_maps():
    prob = drawn((200, 200), 100.0, 100.0, 60.0, 50.0, 0.0)
    prob[5:15, 5:15] = 1.0  # a small bright blob elsewhere
    assert fit_head(prob, prob.shape).hc_px() == pytest.approx(ellipse_perimeter(60, 50), rel=0.005)
    assert not fit_head(np.zeros((64, 64), np.float32), (64, 64)).found
    assert math.isnan(fit_head(np.zeros((64, 64), np.float32), (64, 64)).hc_px())


def test_offset_calibration_recovers_a_known_outline_offset():
    # references are the perimeters of ellipses 1.5 px smaller than the drawn masks
    masks, refs = [], []
    for a, b in [(60, 45), (80, 70), (50, 30)]:
        masks.append(drawn((200, 200), 100.0, 100.0, a, b, 10.0) > 0.5)
        refs.append(ellipse_perimeter(a - 1.5, b - 1.5))
    assert calibrate_offset(masks, refs) == pytest.approx(-1.5, abs=0.1)


def test_trimmed_fit_resists_a_leak_into_a_neighbouring_structure():
    # a head with a blob stuck to its side (segmentation leaking into the placenta, say): the plain fit through
    # every contour point is pulled outwards; the trimmed refit follows the head's own outline
    prob = drawn((240, 320), 160.0, 120.0, 90.0, 70.0, 0.0)
    blob = drawn((240, 320), 250.0, 120.0, 25.0, 35.0, 0.0)
    prob = np.maximum(prob, blob)
    true = ellipse_perimeter(90, 70)
    plain = fit_head(prob, prob.shape, trim_iters=0).hc_px()
    trimmed = fit_head(prob, prob.shape).hc_px()
    assert abs(plain - true) / true > 0.02
    assert trimmed == pytest.approx(true, rel=0.005)


def test_trimmed_fit_keeps_a_clean_ellipse_exact_and_a_border_cut_head_too():
    # trimming must not bias a clean outline (points are dropped only beyond one model pixel), nor a cut head
    for prob in (drawn((200, 260), 130.0, 100.0, 80.0, 55.0, 40.0), drawn((200, 200), 100.0, 30.0, 90.0, 70.0, 0.0)):
        a, b = (80, 55) if prob.shape == (200, 260) else (90, 70)
        assert fit_head(prob, prob.shape).hc_px() == pytest.approx(ellipse_perimeter(a, b), rel=0.005)


def test_head_cut_by_the_border_at_model_size():
    # a large head running off the bottom of a 540x800 frame, seen through a 192x192 map as the estimator does
    native = drawn((540, 800), 400.0, 380.0, 300.0, 220.0, 10.0, upsample=2)
    small = cv2.resize(native, (192, 192), interpolation=cv2.INTER_AREA)
    fit = fit_head(small, native.shape)
    assert fit.border_fraction > 0.1
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(300, 220), rel=0.01)


def test_residuals_are_signed_distances():
    from sonoshift.judges.ga.head_fit import ellipse_residuals

    box = ((50.0, 40.0), (60.0, 40.0), 0.0)  # semi-axes 30 (x) and 20 (y)
    pts = np.array([[80.0, 40.0], [85.0, 40.0], [50.0, 55.0], [50.0, 40.0 - 20.0]], np.float32)
    assert ellipse_residuals(pts, box) == pytest.approx([0.0, 5.0, -5.0, 0.0], abs=1e-5)


def test_ga_ensemble_configs_load_and_share_one_split():
    from pathlib import Path

    from sonoshift.config import load_config
    from sonoshift.downstream.hc18 import Hc18Config
    from sonoshift.downstream.segmenter import SegmenterTrainConfig

    root = Path(__file__).resolve().parents[1] / "configs" / "cpu"
    a = load_config(Hc18Config, root / "hc18_head_ga.yaml", [])
    b = load_config(Hc18Config, root / "hc18_head_ga_deep.yaml", [])
    assert (a.val_fraction, a.split_seed) == (b.val_fraction, b.split_seed)  # ga build refuses other splits
    assert a.train.lr_schedule == b.train.lr_schedule == "cosine" and b.image_size % 2 ** len(b.model.strides) == 0
    with pytest.raises(Exception, match="lr_schedule"):
        SegmenterTrainConfig(lr_schedule="linear")


def test_map_closed_short_of_the_border_is_not_fitted():
    # a head running off the bottom of the frame whose map the network closes 1-3 model pixels above the border
    # (raggedly, as on HC18 heads cut by the image border): those points are dropped, not fitted as skull
    native = drawn((540, 800), 400.0, 380.0, 300.0, 220.0, 10.0, upsample=2)
    small = cv2.resize(native, (192, 192), interpolation=cv2.INTER_AREA)
    rows = np.arange(192)[:, None]
    short = 189 - (np.arange(192) % 3)[None, :]  # the map ends 1-3 px above the bottom row
    closed = np.where(rows >= short, 0.0, small).astype(np.float32)
    truth = ellipse_perimeter(300, 220)
    assert fit_head(closed, native.shape).hc_px() == pytest.approx(truth, rel=0.01)
    assert abs(fit_head(closed, native.shape, border_margin=0.5).hc_px() / truth - 1) > 0.01  # the old margin
