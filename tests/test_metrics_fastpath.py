"""The OpenCV fast path (float32 CPU) against the torch path in float64, and the int32 histogram indices."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, uniform_filter

from sonoshift.metrics import pair_metrics
from sonoshift.metrics.histogram import bc, mi
from sonoshift.metrics.lncc import lncc
from sonoshift.metrics.ssim import css, ssim
from sonoshift.metrics.windows import (
    box_filter,
    gaussian_kernel1d,
    separable_filter,
    uses_opencv,
)

TOL = 1e-5


def _pairs(n: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 pairs in [0, 1] on the uint8 grid (with exact 0 and 1 present) and a random mask."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, h, w, generator=g)
    b = (0.7 * a + 0.3 * torch.rand(n, 1, h, w, generator=g)).clamp(0, 1)
    a, b = (a * 255).round() / 255, (b * 255).round() / 255
    a[0, 0, 0, 0], b[0, 0, 0, 1], a[-1, 0, -1, -1] = 1.0, 1.0, 0.0
    mask = torch.rand(n, h, w, generator=g) > 0.35
    return a, b, mask


def test_dispatch_rule():
    x = torch.zeros(1, 12, 12)
    assert uses_opencv(x)
    assert not uses_opencv(x.double())
    assert not uses_opencv(x.clone().requires_grad_(True))
    with torch.no_grad():
        assert uses_opencv(x.clone().requires_grad_(True))


@pytest.mark.parametrize("shape", [(2, 3, 23, 37), (1, 11, 11), (4, 30, 17)])
def test_gaussian_filter_matches_torch_float64_and_scipy(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    taps = gaussian_kernel1d(1.5, 3.5)
    got = separable_filter(x, taps.float())
    want = separable_filter(x.double(), taps)
    assert got.shape == want.shape == (*shape[:-2], shape[-2] - 10, shape[-1] - 10)
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), atol=TOL)
    plane = x.reshape(-1, *shape[-2:])[-1].double().numpy()
    ref = gaussian_filter(plane, 1.5, truncate=3.5)[5:-5, 5:-5]  # independent reference, last plane
    np.testing.assert_allclose(got.reshape(-1, *got.shape[-2:])[-1].double().numpy(), ref, atol=TOL)


@pytest.mark.parametrize("size", [2, 4, 7, 9])
def test_box_filter_matches_torch_float64_and_scipy(size):
    x = torch.rand(3, 2, 19, 26, generator=torch.Generator().manual_seed(size))
    got = box_filter(x, size)
    want = box_filter(x.double(), size)
    assert got.shape == want.shape == (3, 2, 19 - size + 1, 26 - size + 1)
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), atol=TOL)
    s = size // 2  # scipy's output i is the window over i - size // 2 .. i - size // 2 + size - 1
    ref = uniform_filter(x[1, 0].double().numpy(), size, mode="constant")[s : s + 19 - size + 1, s : s + 26 - size + 1]
    np.testing.assert_allclose(got[1, 0].double().numpy(), ref, atol=TOL)


def test_autograd_stays_on_torch_path():
    x = torch.rand(1, 14, 14, generator=torch.Generator().manual_seed(2), requires_grad=True)
    separable_filter(x, gaussian_kernel1d(dtype=torch.float32)).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("workers", [1, 2])
def test_pair_metrics_float32_equal_float64(use_mask, workers):
    a, b, mask = _pairs(7, 29, 35, seed=3)  # odd size; chunk 3 leaves a partial last chunk of 1
    m = mask if use_mask else None
    fast = pair_metrics(a, b, m, chunk=3, workers=workers)
    ref = pair_metrics(a.double(), b.double(), m, chunk=3)
    for k in ("ssim", "css", "lncc", "mi", "bc", "psnr", "mae"):
        assert fast[k].shape == (7,) and torch.isfinite(fast[k]).all(), k
        np.testing.assert_allclose(fast[k].numpy(), ref[k].numpy(), atol=TOL, rtol=0, err_msg=k)
    # the histogram metrics count the same cells: exactly equal
    assert torch.equal(fast["mi"], ref["mi"]) and torch.equal(fast["bc"], ref["bc"])


def test_pair_metrics_float32_equal_separate_functions_float64():
    a, b, mask = _pairs(5, 24, 31, seed=4)
    for m in (None, mask):
        fast = pair_metrics(a, b, m, chunk=2, css_variant="product")
        ad, bd = a.double(), b.double()
        refs = {
            "ssim": ssim(ad, bd, m),
            "css": css(ad, bd, m, variant="product"),
            "lncc": lncc(ad, bd, m),
            "mi": mi(ad, bd, m),
            "bc": bc(ad, bd, m),
        }
        for k, want in refs.items():
            np.testing.assert_allclose(fast[k].numpy(), want.numpy(), atol=TOL, rtol=0, err_msg=k)


def test_standalone_metrics_float32_equal_float64():
    a, b, mask = _pairs(3, 27, 22, seed=5)
    for m in (None, mask):
        for fn in (ssim, css, lncc):
            got, want = fn(a, b, m), fn(a.double(), b.double(), m)
            np.testing.assert_allclose(got.double().numpy(), want.numpy(), atol=TOL, rtol=0)


@pytest.mark.parametrize("bins", [32, 64, 256, 48])
def test_histogram_bins_exact(bins):
    """int32 index path (powers of two) and the fallback (48) count exactly what histogram.mi counts."""
    a, b, mask = _pairs(3, 16, 16, seed=6)
    edges = torch.arange(0, 257, dtype=torch.float32) / 256  # values on bin edges, 1.0 included
    a[1, 0].view(-1)[:] = edges[:256]
    b[1, 0].view(-1)[:] = edges[1:]
    for m in (None, mask):
        got = pair_metrics(a, b, m, mi_bins=bins, chunk=2)
        assert torch.equal(got["mi"], mi(a, b, m, bins=bins))
        assert torch.equal(got["bc"], bc(a, b, m))


def test_pair_metrics_restores_opencv_threads():
    before = cv2.getNumThreads()
    a, b, _ = _pairs(4, 16, 16, seed=7)
    pair_metrics(a, b, chunk=2, workers=2)
    assert cv2.getNumThreads() == before
