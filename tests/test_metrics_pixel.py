"""PSNR and MAE against scikit-image / numpy and hand-computed values, with and without masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from sonoshift.errors import SonoshiftError
from sonoshift.metrics.pixel import mae, psnr


def test_psnr_matches_skimage_and_mae_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((4, 17, 23))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    ref = [peak_signal_noise_ratio(x, y, data_range=1) for x, y in zip(a, b)]
    np.testing.assert_allclose(psnr(torch.tensor(a), torch.tensor(b)).numpy(), ref, atol=1e-4)
    np.testing.assert_allclose(mae(torch.tensor(a), torch.tensor(b)).numpy(), np.abs(a - b).mean((1, 2)), atol=1e-12)
    # float32 input of uint8 images agrees to 1e-4 as well
    a8, b8 = (a * 255).round() / 255, (b * 255).round() / 255
    ref8 = [peak_signal_noise_ratio(x, y, data_range=1) for x, y in zip(a8, b8)]
    np.testing.assert_allclose(psnr(torch.tensor(a8).float(), torch.tensor(b8).float()).numpy(), ref8, atol=1e-4)


def test_hand_computed_and_identical() -> None:
    a = torch.zeros(1, 1, 4, 4)
    b = torch.full((1, 1, 4, 4), 0.1)
    assert psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert mae(a, b).item() == pytest.approx(0.1, abs=1e-7)
    assert math.isinf(psnr(a, a).item()) and mae(a, a).item() == 0.0


def test_mask_restricts_to_inside_pixels() -> None:
    a = torch.zeros(2, 6, 6)
    b = torch.zeros(2, 6, 6)
    b[:, :, :3] = 0.5  # error only in the left half
    m = torch.zeros(2, 6, 6, dtype=torch.bool)
    m[0, :, 3:] = True  # right half: no error
    m[1, :, 2:4] = True  # half the pixels wrong
    assert math.isinf(psnr(a, b, m)[0].item())
    assert mae(a, b, m)[1].item() == pytest.approx(0.25)
    assert psnr(a, b, m)[1].item() == pytest.approx(10 * math.log10(1 / 0.125), abs=1e-5)
    empty = torch.zeros(2, 6, 6, dtype=torch.bool)
    assert torch.isnan(mae(a, b, empty)).all()


def test_bad_shapes_raise_one_sentence() -> None:
    with pytest.raises(SonoshiftError, match="differ in shape"):
        psnr(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
    with pytest.raises(SonoshiftError, match="one channel"):
        mae(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(SonoshiftError, match="mask shape"):
        mae(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool))
