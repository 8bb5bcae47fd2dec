"""Window filters (Gaussian taps, box by doubling) against scipy / numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter

from sonoshift.errors import SonoshiftError
from sonoshift.metrics.windows import box_filter, crop_center, gaussian_kernel1d, masked_mean, separable_filter


def test_gaussian_taps_follow_scipy_rule() -> None:
    taps = gaussian_kernel1d(1.5, 3.5)
    assert taps.numel() == 11 and taps.sum().item() == pytest.approx(1.0) and torch.equal(taps, taps.flip(0))
    impulse = np.zeros(21)
    impulse[10] = 1
    ref = gaussian_filter(impulse, 1.5, truncate=3.5)[5:16]
    np.testing.assert_allclose(taps.numpy(), ref, atol=1e-15)


def test_separable_gaussian_equals_scipy_valid_region() -> None:
    x = np.random.default_rng(0).random((2, 3, 20, 17))
    got = separable_filter(torch.tensor(x), gaussian_kernel1d(1.5, 3.5)).numpy()
    ref = gaussian_filter(x, (0, 0, 1.5, 1.5), truncate=3.5)[..., 5:-5, 5:-5]
    assert got.shape == (2, 3, 10, 7)
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 9, 10])
def test_box_filter_equals_sliding_mean(size: int) -> None:
    x = np.random.default_rng(size).random((2, 14, 13))
    ref = sliding_window_view(x, (size, size), axis=(1, 2)).mean(axis=(-2, -1))
    got = box_filter(torch.tensor(x), size).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_crop_and_masked_mean() -> None:
    x = torch.arange(49.0).view(1, 7, 7)
    assert torch.equal(crop_center(x, 5), x[:, 2:5, 2:5])
    m = torch.zeros(1, 7, 7, dtype=torch.bool)
    m[0, 0, :2] = True
    assert masked_mean(x, m).item() == pytest.approx(0.5)
    assert torch.isnan(masked_mean(x, torch.zeros_like(m))).all()


def test_window_larger_than_image() -> None:
    with pytest.raises(SonoshiftError, match="smaller than the 11x11"):
        separable_filter(torch.zeros(1, 8, 30), gaussian_kernel1d())
