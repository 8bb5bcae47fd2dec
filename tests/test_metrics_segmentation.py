"""Dice and HD95 against hand-computed values and a brute-force numpy reference."""

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
    assert math.isnan(h[0, 0].item()) and h[0, 1].item() == pytest.approx(math.hypot(16, 16))  # diagonal


# ---- one implementation, one convention: batch and per-class entry points against counting and brute force ----


def _blobs(rng: np.random.Generator, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """A random label map of smooth blobs: each class wins where its smoothed noise is highest and above 0.5."""
    from scipy.ndimage import gaussian_filter

    fields = np.stack([gaussian_filter(rng.random(shape), 2.5) for _ in range(num_classes - 1)])
    lab = fields.argmax(0) + 1
    return np.where(fields.max(0) > 0.5, lab, 0).astype(np.int64)


def _dice_count(p: np.ndarray, r: np.ndarray, c: int) -> float:
    a, b = int((p == c).sum()), int((r == c).sum())
    return math.nan if a + b == 0 else 2 * int(((p == c) & (r == c)).sum()) / (a + b)


def _hd95_brute(a: np.ndarray, b: np.ndarray, sy: float = 1.0, sx: float = 1.0) -> float:
    """Boundary pixels (in the class, touching a pixel outside it or the image edge), all pairwise distances in
    physical units, the larger of the two directed 95th percentiles."""
    scale = np.array([sy, sx])
    ea = np.argwhere(a & ~binary_erosion(a)) * scale
    eb = np.argwhere(b & ~binary_erosion(b)) * scale
    d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
    return float(max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95)))


def test_batch_and_per_class_agree_with_counting_and_brute_force() -> None:
    from sonoshift.metrics.segmentation import dice_per_class, hd95_per_class

    rng = np.random.default_rng(3)
    k = 4
    pred = np.stack([_blobs(rng, (24, 20), k) for _ in range(3)])
    ref = np.stack([_blobs(rng, (24, 20), k) for _ in range(3)])
    pred[1][pred[1] == 3] = 0  # class 3 missed in image 1 ...
    ref[2][ref[2] == 2] = 0  # ... class 2 hallucinated in image 2
    pred[0][pred[0] == 1], ref[0][ref[0] == 1] = 0, 0  # class 1 in neither map of image 0
    d = dice(torch.tensor(pred), torch.tensor(ref), k)
    h = hd95(torch.tensor(pred), torch.tensor(ref), k, spacing=(0.5, 2.0))
    assert d.shape == h.shape == (3, k - 1) and d.dtype == h.dtype == torch.float64
    diagonal = math.hypot(24 * 0.5, 20 * 2.0)
    for i in range(3):
        for c in range(1, k):
            in_p, in_r = (pred[i] == c).any(), (ref[i] == c).any()
            want_d = _dice_count(pred[i], ref[i], c)
            if in_p and in_r:
                want_h = _hd95_brute(pred[i] == c, ref[i] == c, 0.5, 2.0)
            else:
                want_h = diagonal if in_p or in_r else math.nan
            np.testing.assert_allclose(d[i, c - 1].item(), want_d, rtol=1e-6, equal_nan=True)
            np.testing.assert_allclose(h[i, c - 1].item(), want_h, rtol=1e-5, equal_nan=True)
        np.testing.assert_array_equal(dice_per_class(pred[i], ref[i], k), d[i].numpy())
        np.testing.assert_array_equal(hd95_per_class(pred[i], ref[i], k, (0.5, 2.0)), h[i].numpy())
    # the cases built above are really there
    assert math.isnan(d[0, 0].item()) and math.isnan(h[0, 0].item())
    assert d[1, 2].item() == 0.0 and h[1, 2].item() == pytest.approx(diagonal)
    assert d[2, 1].item() == 0.0 and h[2, 1].item() == pytest.approx(diagonal)


def test_hd95_against_distance_transforms() -> None:
    from scipy.ndimage import distance_transform_edt

    from sonoshift.metrics.segmentation import hd95_per_class

    a, b = np.zeros((30, 26), bool), np.zeros((30, 26), bool)
    a[4:20, 3:15] = True
    b[9:27, 8:24] = True
    b[12:15, 12:16] = False  # a hole: its rim is boundary too
    ea, eb = a & ~binary_erosion(a), b & ~binary_erosion(b)
    want = max(np.percentile(distance_transform_edt(~eb)[ea], 95), np.percentile(distance_transform_edt(~ea)[eb], 95))
    assert hd95_per_class(a.astype(np.uint8), b.astype(np.uint8), 2)[0] == pytest.approx(want, rel=1e-6)
    assert hd95_per_class(a, b, 2)[0] == pytest.approx(_hd95_brute(a, b), rel=1e-6)  # bool maps work too


def test_one_sided_and_empty_conventions() -> None:
    from sonoshift.metrics.segmentation import dice_per_class, hd95_per_class

    blob, empty = _square(2, 3, side=4, size=12), np.zeros((12, 12), np.int64)
    for p, r in ((blob, empty), (empty, blob)):  # missed and hallucinated score alike
        assert dice_per_class(p, r, 2)[0] == 0.0
        assert hd95_per_class(p, r, 2)[0] == pytest.approx(math.hypot(12, 12))
        assert hd95_per_class(p, r, 2, spacing=0.25)[0] == pytest.approx(0.25 * math.hypot(12, 12))
    assert math.isnan(dice_per_class(empty, empty, 2)[0]) and math.isnan(hd95_per_class(empty, empty, 2)[0])
    assert dice_per_class(blob, blob, 2)[0] == 1.0 and hd95_per_class(blob, blob, 2)[0] == 0.0


def test_bad_inputs_raise_one_sentence() -> None:
    from sonoshift.errors import SonoshiftError
    from sonoshift.metrics.segmentation import dice_per_class, hd95_per_class

    a = _square(1, 1, side=3, size=8)
    with pytest.raises(SonoshiftError, match="one shape"):
        dice_per_class(a, a[:7], 2)
    with pytest.raises(SonoshiftError, match="outside"):
        dice_per_class(a * 2, a, 2)
    with pytest.raises(SonoshiftError, match="non-integer"):
        hd95(torch.tensor(a)[None] * 0.5, torch.tensor(a)[None], 2)
    with pytest.raises(SonoshiftError, match="differ in shape"):
        dice(torch.tensor(a)[None], torch.tensor(a)[None].expand(2, -1, -1), 2)
    with pytest.raises(SonoshiftError, match="spacing"):
        hd95_per_class(a, a, 2, spacing=0.0)
    with pytest.raises(SonoshiftError, match="spacing"):
        hd95_per_class(a, a, 2, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(SonoshiftError, match="num_classes"):
        dice_per_class(a * 0, a * 0, 1)
