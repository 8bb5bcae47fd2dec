"""Dice and HD95 (through MONAI) against hand-computed values and a brute-force numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from sonoshift.metrics.segmentation import dice, hd95


def _square(y: int, x: int, side: int = 10, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), np.int64)
    m[y : y + side, x : x + side] = 1
    return m


def _hd95_ref(a: np.ndarray, b: np.ndarray) -> float:
    ea = np.argwhere(a & ~binary_erosion(a))
    eb = np.argwhere(b & ~binary_erosion(b))
    d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_dice_hand_computed() -> None:
    a, b = _square(5, 5), _square(5, 10)  # overlap 10 x 5 = 50 of 100 + 100 pixels
    d = dice(torch.tensor(a)[None], torch.tensor(b)[None], num_classes=2)
    assert d.shape == (1, 1) and d.item() == pytest.approx(2 * 50 / 200)
    assert dice(torch.tensor(a)[None], torch.tensor(a)[None], 2).item() == 1.0


def test_hd95_matches_reference_and_identity() -> None:
    a, b = _square(5, 5), _square(8, 9)
    got = hd95(torch.tensor(a)[None], torch.tensor(b)[None], num_classes=2).item()
    assert got == pytest.approx(_hd95_ref(a.astype(bool), b.astype(bool)), abs=1e-6)
    assert hd95(torch.tensor(a)[None], torch.tensor(a)[None], 2).item() == 0.0
    assert hd95(torch.tensor(a)[None], torch.tensor(b)[None], 2, spacing=0.5).item() == pytest.approx(got / 2)


def test_absent_classes() -> None:
    a = np.zeros((1, 16, 16), np.int64)
    b = np.zeros((1, 16, 16), np.int64)
    b[0, 4:8, 4:8] = 2
    d = dice(torch.tensor(a), torch.tensor(b), num_classes=3)
    h = hd95(torch.tensor(a), torch.tensor(b), num_classes=3)
    assert math.isnan(d[0, 0].item()) and d[0, 1].item() == 0.0  # class 1 in neither, class 2 in one
    assert math.isnan(h[0, 0].item()) and math.isinf(h[0, 1].item())
