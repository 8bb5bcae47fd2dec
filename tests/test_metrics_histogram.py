"""MI and BC against scikit-image / numpy references and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import normalized_mutual_information

from sonoshift.metrics.histogram import bc, bc_dataset, joint_histogram, mi


def _pair(seed: int, shape=(3, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    b = np.clip(a**2 + 0.1 * rng.standard_normal(shape), 0, 1)
    # both images span exactly [0, 1], so skimage's min..max bins equal our fixed [0, 1] bins
    for x in (a, b):
        x[:, 0, 0], x[:, 0, 1] = 0.0, 1.0
    return a, b


def test_normalized_mi_matches_skimage() -> None:
    a, b = _pair(0)
    ours = mi(torch.tensor(a), torch.tensor(b), bins=64).numpy()
    # skimage gives (H(A) + H(B)) / H(A, B) = nmi; 2 I / (H(A) + H(B)) = 2 - 2 / nmi.
    ref = [2 - 2 / normalized_mutual_information(x, y, bins=64) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_mi_bits_matches_numpy() -> None:
    a, b = _pair(1)
    ours = mi(torch.tensor(a), torch.tensor(b), bins=16, normalized=False).numpy()
    for k in range(3):
        p, _, _ = np.histogram2d(a[k].ravel(), b[k].ravel(), bins=16, range=[[0, 1], [0, 1]])
        p = p / p.sum()
        pa, pb = p.sum(1), p.sum(0)
        nz = p > 0
        ref = (p[nz] * np.log2(p[nz] / np.outer(pa, pb)[nz])).sum()
        assert ours[k] == pytest.approx(ref, abs=1e-4)


def test_mi_hand_cases() -> None:
    a = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    assert mi(a, a, bins=2, normalized=False).item() == pytest.approx(1.0)  # one fair bit
    assert mi(a, a, bins=2).item() == pytest.approx(1.0)
    b = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # independent of a
    assert mi(a, b, bins=2).item() == pytest.approx(0.0, abs=1e-12)
    const = torch.full((1, 4, 4), 0.3)
    assert mi(const, const).item() == 1.0  # documented: both constant -> 1
    assert mi(const, torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))).item() == 0.0


def test_masked_mi_counts_only_inside() -> None:
    a, b = _pair(2, (1, 20, 20))
    m = np.zeros((1, 20, 20), bool)
    m[0, 5:15, 3:18] = True
    h = joint_histogram(torch.tensor(a), torch.tensor(b), torch.tensor(m), bins=8)
    ref, _, _ = np.histogram2d(a[m], b[m], bins=8, range=[[0, 1], [0, 1]])
    np.testing.assert_array_equal(h[0].numpy(), ref)
    empty = torch.zeros(1, 20, 20, dtype=torch.bool)
    assert torch.isnan(mi(torch.tensor(a), torch.tensor(b), empty)).all()


def test_bc_matches_numpy_and_hand_cases() -> None:
    a, b = _pair(3)
    ours = bc(torch.tensor(a), torch.tensor(b)).numpy()
    for k in range(3):
        p = np.histogram(a[k], bins=256, range=(0, 1))[0] / a[k].size
        q = np.histogram(b[k], bins=256, range=(0, 1))[0] / b[k].size
        assert ours[k] == pytest.approx(np.sqrt(p * q).sum(), abs=1e-10)
    x = torch.full((1, 4, 4), 0.1)
    y = torch.full((1, 4, 4), 0.9)
    assert bc(x, x).item() == pytest.approx(1.0) and bc(x, y).item() == 0.0
    half = x.clone()
    half[0, :2] = 0.9  # p = (1/2, 1/2) on two bins, q = (0, 1): BC = sqrt(1/2)
    assert bc(half, y).item() == pytest.approx(math.sqrt(0.5))


def test_uint8_levels_map_one_to_one_onto_256_bins() -> None:
    levels = torch.arange(256, dtype=torch.float32).view(1, 16, 16) / 255
    shifted = torch.roll(levels, 1, dims=2)
    assert bc(levels, shifted).item() == pytest.approx(1.0)  # same histogram, one count per bin
    assert bc(levels, (levels * 255 + 1).clamp(max=255) / 255).item() < 1.0


def test_bc_dataset_pools_histograms() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random((5, 8, 8)), rng.random((3, 8, 8)) ** 2
    p = np.histogram(a, bins=256, range=(0, 1))[0] / a.size
    q = np.histogram(b, bins=256, range=(0, 1))[0] / b.size
    chunks = [torch.tensor(a[:2]), torch.tensor(a[2:])]
    assert bc_dataset(chunks, torch.tensor(b)) == pytest.approx(np.sqrt(p * q).sum(), abs=1e-10)
