"""SSIM, its l/c/s maps and CSS against scikit-image, scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from sonoshift.metrics.ssim import C1, C2, C3, css, ssim, ssim_maps


def _pair(seed: int, shape=(3, 32, 29)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random(shape), sigma=(0, 1.2, 1.2))
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(0.8 * a + 0.1 + 0.1 * rng.standard_normal(shape), 0, 1)
    return a, b


def _sk(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_matches_skimage(dtype: torch.dtype) -> None:
    a, b = _pair(0)
    ours = ssim(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)).double().numpy()
    ref = np.array([_sk(x, y) for x, y in zip(a, b)])
    np.testing.assert_allclose(ours, ref, atol=1e-4 if dtype == torch.float32 else 1e-10)


def test_ssim_accepts_channel_dim_and_uint8_free_float() -> None:
    a, b = _pair(1, (2, 24, 24))
    ta, tb = torch.tensor(a), torch.tensor(b)
    assert torch.allclose(ssim(ta.unsqueeze(1), tb.unsqueeze(1)), ssim(ta, tb))


def _ref_moments(a: np.ndarray, b: np.ndarray):
    f = lambda x: gaussian_filter(x, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731 - skimage's filter + crop
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    return mu_a, mu_b, va, vb, cov


def test_luminance_contrast_structure_maps_match_scipy_reference() -> None:
    a, b = _pair(2, (1, 30, 30))
    maps = ssim_maps(torch.tensor(a), torch.tensor(b))
    mu_a, mu_b, va, vb, cov = _ref_moments(a[0], b[0])
    sa, sb = np.sqrt(np.maximum(va, 0)), np.sqrt(np.maximum(vb, 0))
    np.testing.assert_allclose(maps.luminance[0].numpy(), (2 * mu_a * mu_b + C1) / (mu_a**2 + mu_b**2 + C1), atol=1e-10)
    np.testing.assert_allclose(maps.contrast[0].numpy(), (2 * sa * sb + C2) / (va + vb + C2), atol=1e-10)
    np.testing.assert_allclose(maps.structure[0].numpy(), (cov + C3) / (sa * sb + C3), atol=1e-10)
    # With C3 = C2 / 2, SSIM = l * c * s pixel by pixel (the maps come from one code path).
    prod = maps.luminance * maps.contrast * maps.structure
    np.testing.assert_allclose(maps.ssim.numpy(), prod.numpy(), atol=1e-10)
    assert maps.ssim.shape == (1, 20, 20) and maps.mask is None


def test_css_mean_and_product_variants_match_a_numpy_reference() -> None:
    """CSS from c and s maps computed by hand with numpy on scipy's Gaussian moments (skimage's filter and
    border crop), not from our own maps."""
    a, b = _pair(3, (2, 28, 28))
    expect_mean, expect_prod = [], []
    for x, y in zip(a, b):
        _, _, va, vb, cov = _ref_moments(x, y)
        sa, sb = np.sqrt(np.maximum(va, 0)), np.sqrt(np.maximum(vb, 0))
        c = (2 * sa * sb + C2) / (va + vb + C2)
        s = (cov + C2 / 2) / (sa * sb + C2 / 2)
        expect_mean.append(np.mean((c + s) / 2))
        expect_prod.append(np.mean(c * s))
    np.testing.assert_allclose(css(torch.tensor(a), torch.tensor(b)).numpy(), expect_mean, atol=1e-10)
    np.testing.assert_allclose(css(torch.tensor(a), torch.tensor(b), variant="product").numpy(), expect_prod,
                               atol=1e-10)
    # CSS ignores luminance: a global brightness offset changes SSIM but hardly CSS.
    shifted = torch.tensor(np.clip(a + 0.3, 0, 1.3))
    assert css(torch.tensor(a), shifted)[0] > 0.999 and ssim(torch.tensor(a), shifted)[0] < 0.95


def test_identical_and_constant_images() -> None:
    a, _ = _pair(4, (2, 20, 20))
    ta = torch.tensor(a)
    assert torch.allclose(ssim(ta, ta), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(css(ta, ta), torch.ones(2, dtype=torch.float64))
    # Constant images: variances are 0, so SSIM is the luminance term (2xy + C1) / (x^2 + y^2 + C1).
    x, y = 0.2, 0.6
    ca, cb = torch.full((1, 16, 16), x, dtype=torch.float64), torch.full((1, 16, 16), y, dtype=torch.float64)
    assert ssim(ca, cb).item() == pytest.approx((2 * x * y + C1) / (x * x + y * y + C1), abs=1e-12)
    assert ssim(ca, cb).item() == pytest.approx(_sk(ca[0].numpy(), cb[0].numpy()), abs=1e-12)
    assert css(ca, cb).item() == pytest.approx(1.0, abs=1e-12)  # flat vs flat: c = s = 1


def _masked_reference(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    """Brute force: every in-mask centre >= 5 px from the border, Gaussian weights restricted to the mask."""
    g1 = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    g = np.outer(g1, g1)
    vals = []
    for i in range(5, a.shape[0] - 5):
        for j in range(5, a.shape[1] - 5):
            if not m[i, j]:
                continue
            w = g * m[i - 5 : i + 6, j - 5 : j + 6]
            w = w / w.sum()
            pa, pb = a[i - 5 : i + 6, j - 5 : j + 6], b[i - 5 : i + 6, j - 5 : j + 6]
            mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa**2).sum() - mu_a**2, (w * pb**2).sum() - mu_b**2
            cov = (w * pa * pb).sum() - mu_a * mu_b
            vals.append((2 * mu_a * mu_b + C1) * (2 * cov + C2) / ((mu_a**2 + mu_b**2 + C1) * (va + vb + C2)))
    return float(np.mean(vals))


def test_masked_ssim_matches_brute_force_reference() -> None:
    a, b = _pair(5, (1, 22, 24))
    yy, xx = np.mgrid[:22, :24]
    m = (yy - 11) ** 2 + (xx - 12) ** 2 < 60
    ours = ssim(torch.tensor(a), torch.tensor(b), torch.tensor(m)[None]).item()
    assert ours == pytest.approx(_masked_reference(a[0], b[0], m), abs=1e-10)
    # Out-of-mask pixels do not matter at all.
    b2 = b.copy()
    b2[0][~m] = 0.0
    assert ssim(torch.tensor(a), torch.tensor(b2), torch.tensor(m)[None]).item() == pytest.approx(ours, abs=1e-12)


def test_mask_edge_cases() -> None:
    a, b = _pair(6, (2, 20, 20))
    ta, tb = torch.tensor(a), torch.tensor(b)
    full = torch.ones(2, 20, 20, dtype=torch.bool)
    assert torch.equal(ssim(ta, tb, full), ssim(ta, tb))
    # A single in-mask pixel: zero variances, so SSIM is the luminance of that pixel pair.
    one = torch.zeros(2, 20, 20, dtype=torch.bool)
    one[:, 10, 10] = True
    x, y = a[:, 10, 10], b[:, 10, 10]
    expect = (2 * x * y + C1) / (x * x + y * y + C1)
    np.testing.assert_allclose(ssim(ta, tb, one).numpy(), expect, atol=1e-12)
    # Mask only in the 5-pixel border: no window centre, NaN.
    border = torch.zeros(2, 20, 20, dtype=torch.bool)
    border[:, 0:3, :] = True
    assert torch.isnan(ssim(ta, tb, border)).all()
