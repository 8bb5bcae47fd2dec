"""LNCC against a numpy sliding-window reference and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from sonoshift.metrics.lncc import LNCC_EPS, lncc


def _ref(a: np.ndarray, b: np.ndarray, m: np.ndarray | None = None, k: int = 9) -> float:
    wa, wb = sliding_window_view(a, (k, k)), sliding_window_view(b, (k, k))
    w = np.ones_like(wa) if m is None else sliding_window_view(m.astype(float), (k, k))
    n = w.sum((-2, -1))
    mu_a, mu_b = (w * wa).sum((-2, -1)) / n, (w * wb).sum((-2, -1)) / n
    va = (w * (wa - mu_a[..., None, None]) ** 2).sum((-2, -1)) / n
    vb = (w * (wb - mu_b[..., None, None]) ** 2).sum((-2, -1)) / n
    cov = (w * (wa - mu_a[..., None, None]) * (wb - mu_b[..., None, None])).sum((-2, -1)) / n
    vals = (cov + LNCC_EPS) / np.sqrt((va + LNCC_EPS) * (vb + LNCC_EPS))
    r = (k - 1) // 2
    centres = np.ones(vals.shape, bool) if m is None else m[r:-r, r:-r]
    return float(vals[centres].mean())


def test_lncc_matches_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((3, 20, 25))
    b = np.clip(0.5 * a + 0.5 * rng.random(a.shape), 0, 1)
    ours = lncc(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(ours, [_ref(x, y) for x, y in zip(a, b)], atol=1e-10)
    ours32 = lncc(torch.tensor(a).float(), torch.tensor(b).float()).double().numpy()
    np.testing.assert_allclose(ours32, ours, atol=1e-4)


def test_masked_lncc_matches_reference() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((1, 18, 18)), rng.random((1, 18, 18))
    b = 0.3 * a + 0.7 * b
    m = np.zeros((18, 18), bool)
    m[3:15, 2:12] = True
    ours = lncc(torch.tensor(a), torch.tensor(b), torch.tensor(m)[None]).item()
    assert ours == pytest.approx(_ref(a[0], b[0], m), abs=1e-10)


def test_hand_cases_identical_inverted_flat() -> None:
    rng = np.random.default_rng(2)
    a = torch.tensor(rng.random((1, 16, 16)))
    assert lncc(a, a).item() == pytest.approx(1.0, abs=1e-12)
    assert lncc(a, 1 - a).item() < -0.99  # anti-correlated everywhere
    flat = torch.full_like(a, 0.5)
    assert lncc(flat, flat).item() == pytest.approx(1.0, abs=1e-9)  # stabilized: identical flat windows
    assert abs(lncc(flat, a).item()) < 0.05  # flat vs textured: ~0 (sqrt(eps / (var + eps)))
    assert lncc(a, 0.5 * a + 0.2).item() == pytest.approx(1.0, abs=1e-3)  # affine invariance (up to eps)
