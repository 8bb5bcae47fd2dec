"""LNCC against a numpy sliding-window reference and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from sonoshift.errors import SonoshiftError
from sonoshift.metrics import pair_metrics
from sonoshift.metrics.lncc import LNCC_EPS, lncc, lncc_map
from sonoshift.metrics.windows import crop_center


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


# ---- any window size, even ones included, against an explicit loop over windows ----------------------------------


def _loop_ref(a: np.ndarray, b: np.ndarray, m: np.ndarray | None, k: int) -> float:
    """LNCC written out window by window: population statistics of the in-mask pixels of each K x K window whose
    anchor (upper-left pixel of the central 2 x 2 for even K, the centre for odd K) is in the mask; their mean."""
    r = (k - 1) // 2
    vals = []
    for i in range(a.shape[0] - k + 1):
        for j in range(a.shape[1] - k + 1):
            if m is not None and not m[i + r, j + r]:
                continue
            sel = np.ones((k, k), bool) if m is None else m[i : i + k, j : j + k]
            x, y = a[i : i + k, j : j + k][sel], b[i : i + k, j : j + k][sel]
            cov = ((x - x.mean()) * (y - y.mean())).mean()
            vals.append((cov + LNCC_EPS) / np.sqrt((x.var() + LNCC_EPS) * (y.var() + LNCC_EPS)))
    return float(np.mean(vals)) if vals else float("nan")


def _pair_and_masks(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((2, 14, 13))
    b = np.clip(0.6 * a + 0.4 * rng.random(a.shape), 0, 1)
    m = np.zeros(a.shape, bool)
    m[0, 2:12, 1:9] = True
    m[0, 5:7, 9:12] = True  # a ragged edge, so the choice of anchor changes which windows count
    m[1] = rng.random((14, 13)) < 0.7  # scattered holes
    return a, b, m


@pytest.mark.parametrize("k", [1, 2, 4, 5, 8])
def test_any_window_matches_loop_reference(k: int) -> None:
    a, b, m = _pair_and_masks(k)
    want = [_loop_ref(x, y, None, k) for x, y in zip(a, b)]
    want_m = [_loop_ref(x, y, z, k) for x, y, z in zip(a, b, m)]
    ta, tb, tm = torch.tensor(a), torch.tensor(b), torch.tensor(m)
    np.testing.assert_allclose(lncc(ta, tb, window=k).numpy(), want, atol=1e-10)
    np.testing.assert_allclose(lncc(ta, tb, tm, window=k).numpy(), want_m, atol=1e-10)
    np.testing.assert_allclose(pair_metrics(ta, tb, tm, lncc_window=k)["lncc"].numpy(), want_m, atol=1e-10)
    if k == 1:  # one-pixel windows have zero variance: float32's E[x^2] - E[x]^2 rounding is then not small vs eps
        return
    # float32 takes the OpenCV filters, the batched suite its own box sums: both give the same numbers
    np.testing.assert_allclose(lncc(ta.float(), tb.float(), tm, window=k).double().numpy(), want_m, atol=1e-4)
    np.testing.assert_allclose(
        pair_metrics(ta.float(), tb.float(), tm, lncc_window=k)["lncc"].numpy(), want_m, atol=1e-4
    )


def test_even_window_anchor_and_shapes() -> None:
    x = torch.arange(7 * 6).reshape(1, 7, 6)
    # k = 4: windows over rows i..i+3 are anchored at row i + 1, so one row/column goes before and two after
    assert torch.equal(crop_center(x, 4), x[:, 1:5, 1:4])
    assert torch.equal(crop_center(x, 5), x[:, 2:5, 2:4])  # odd: the centre, as before
    a, b, m = _pair_and_masks(0)
    vals, cm = lncc_map(torch.tensor(a), torch.tensor(b), torch.tensor(m), window=6)
    assert vals.shape == cm.shape == (2, 9, 8)


def test_bad_windows_raise() -> None:
    a = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    for window, msg in ((0, "at least 1"), (8.0, "whole number"), (9, "smaller than")):
        with pytest.raises(SonoshiftError, match=msg):
            lncc(a, a, window=window)
