"""FID against a scipy sqrtm reference, KID against a direct MMD computation, the default extractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from sonoshift.errors import SonoshiftError
from sonoshift.metrics.fid import RandomConvFeatures, fid_from_features, fid_kid, kid_from_features


def _gauss(seed: int, n: int, d: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mix + shift


def test_fid_matches_scipy_reference() -> None:
    fa, fb = _gauss(0, 200, 6, 0.0), _gauss(1, 150, 6, 0.5)
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    sa, sb = np.cov(fa, rowvar=False, bias=True), np.cov(fb, rowvar=False, bias=True)
    ref = ((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * np.real(sqrtm(sa @ sb)))
    assert fid_from_features(torch.tensor(fa), torch.tensor(fb)) == pytest.approx(ref, rel=1e-6, abs=1e-8)
    assert fid_from_features(torch.tensor(fa), torch.tensor(fa)) == pytest.approx(0.0, abs=1e-8)


def _kid_ref(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_matches_direct_mmd() -> None:
    fa, fb = _gauss(2, 30, 4, 0.0), _gauss(3, 25, 4, 0.3)
    kid, std = kid_from_features(torch.tensor(fa), torch.tensor(fb))
    assert kid == pytest.approx(_kid_ref(fa, fb), rel=1e-9) and std == 0.0


def test_kid_subsets_are_seeded() -> None:
    fa, fb = torch.tensor(_gauss(4, 60, 3, 0.0)), torch.tensor(_gauss(5, 50, 3, 1.0))
    r1 = kid_from_features(fa, fb, subsets=5, subset_size=20, generator=torch.Generator().manual_seed(7))
    r2 = kid_from_features(fa, fb, subsets=5, subset_size=20, generator=torch.Generator().manual_seed(7))
    assert r1 == r2 and r1[0] > 0.01 and r1[1] > 0


def test_default_extractor_is_fixed_and_labelled() -> None:
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(RandomConvFeatures()(x), RandomConvFeatures()(x))
    g = torch.Generator().manual_seed(1)
    a = torch.rand(12, 1, 32, 32, generator=g)
    near = (a + 0.01 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    far = torch.rand(12, 1, 32, 32, generator=g) ** 3
    out_near, out_far = fid_kid(a, near), fid_kid(a, far)
    assert "not comparable to Inception-FID" in str(out_near["extractor_label"])
    assert out_near["fid"] < out_far["fid"] and out_near["n_a"] == 12


def test_too_few_images() -> None:
    with pytest.raises(SonoshiftError, match="at least 2"):
        fid_from_features(torch.zeros(1, 3), torch.zeros(4, 3))
