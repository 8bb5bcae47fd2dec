"""Dice/HD95 per class and the head ellipse measurements against hand-computed and independent references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.draw import ellipse as draw_ellipse

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.downstream.ellipse import fit_ellipse, head_measurements, largest_component
from sonoshift.metrics.segmentation import dice_per_class, hd95_per_class


def _hd95_reference(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Independent reference: MONAI's symmetric 95th-percentile Hausdorff distance on the two binary masks."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    def t(m: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(m.astype(np.float32))[None, None]

    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal edge helper argument
        warnings.simplefilter("ignore", FutureWarning)
        d = compute_hausdorff_distance(t(a), t(b), include_background=True, percentile=95, spacing=list(spacing))
    return float(d)


def test_dice_hand_computed():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[0:4, 0:5] = 1  # 20 px
    b[0:4, 2:7] = 1  # 20 px, overlap 4x3 = 12 -> Dice 24/40
    a[6:8, 6:8] = 2  # class 2 only in the prediction -> 0
    d = dice_per_class(a, b, 4)  # class 3 in neither -> NaN
    assert d[0] == pytest.approx(0.6)
    assert d[1] == 0.0
    assert math.isnan(d[2])
    assert dice_per_class(b, b, 2)[0] == pytest.approx(1.0)


def test_hd95_hand_computed_and_conventions():
    a = np.zeros((20, 30), np.uint8)
    b = np.zeros((20, 30), np.uint8)
    a[5, 5] = 1
    b[8, 9] = 1  # single pixels 3-4-5 apart
    h = hd95_per_class(a, b, 3)
    assert h[0] == pytest.approx(5.0)
    assert math.isnan(h[1])  # class 2 absent from both
    assert hd95_per_class(a, a, 2)[0] == 0.0
    only_pred = hd95_per_class(a, np.zeros_like(a), 2)[0]
    assert only_pred == pytest.approx(math.hypot(20, 30))  # missing structure -> image diagonal
    assert hd95_per_class(a, b, 2, spacing=0.5)[0] == pytest.approx(2.5)


def test_hd95_matches_monai_on_random_blobs_with_border_contact_and_anisotropic_spacing():
    rng = np.random.default_rng(0)
    for i in range(6):
        a = ndi.gaussian_filter(rng.random((40, 48)), 3) > 0.5  # blobs that touch the image border
        b = ndi.gaussian_filter(rng.random((40, 48)), 3) > 0.5
        spacing = (1.0, 1.0) if i % 2 == 0 else (0.4, 0.7)
        got = hd95_per_class(a.astype(np.uint8), b.astype(np.uint8), 2, spacing=spacing)[0]
        assert got == pytest.approx(_hd95_reference(a, b, spacing), rel=1e-5)


def test_fit_ellipse_recovers_drawn_ellipse():
    m = np.zeros((200, 300), bool)
    rr, cc = draw_ellipse(90, 160, 35, 70, shape=m.shape, rotation=0.6)
    m[rr, cc] = True
    fit = fit_ellipse(m)
    assert (fit.cx, fit.cy) == (pytest.approx(160, abs=0.5), pytest.approx(90, abs=0.5))
    assert fit.a == pytest.approx(70, abs=1.0) and fit.b == pytest.approx(35, abs=1.0)
    meas = head_measurements(m, pixel_size=0.2)
    assert meas["ellipse_iou"] > 0.97
    assert meas["components"] == 1
    assert meas["area_fraction"] == pytest.approx(m.mean())
    assert meas["hc_mm"] == pytest.approx(0.2 * ellipse_perimeter(70, 35), rel=0.02)


def test_head_measurements_penalise_non_ellipses_and_handle_empty():
    square = np.zeros((64, 64), bool)
    square[10:50, 10:50] = True
    square[55:58, 55:58] = True  # a second, small component
    meas = head_measurements(square)
    assert meas["components"] == 2
    assert meas["ellipse_iou"] < 0.95  # a square is not an ellipse
    assert largest_component(square).sum() == 1600
    empty = head_measurements(np.zeros((8, 8), bool), pixel_size=0.1)
    assert empty["area_fraction"] == 0 and math.isnan(empty["hc_px"]) and math.isnan(empty["hc_mm"])
    assert fit_ellipse(np.zeros((8, 8), bool)) is None
