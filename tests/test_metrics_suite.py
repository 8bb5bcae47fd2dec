"""pair_metrics (one shared pass, chunked) equals the separate metric functions; registry directions."""

from __future__ import annotations

import torch

from sonoshift.metrics import PAIR_METRICS, REGISTRY, higher_is_better, pair_metrics
from sonoshift.metrics.histogram import bc, mi
from sonoshift.metrics.lncc import lncc
from sonoshift.metrics.pixel import mae, psnr
from sonoshift.metrics.ssim import css, ssim


def _data():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 1, 24, 24, generator=g)
    b = (0.7 * a + 0.3 * torch.rand(5, 1, 24, 24, generator=g)).clamp(0, 1)
    m = torch.zeros(5, 1, 24, 24, dtype=torch.bool)
    m[:, :, 4:20, 2:22] = True
    return a, b, m


def test_suite_equals_separate_functions_with_and_without_mask() -> None:
    a, b, m = _data()
    for mask in (None, m):
        got = pair_metrics(a, b, mask, chunk=2, css_variant="product", mi_bins=32)
        want = {
            "psnr": psnr(a, b, mask), "mae": mae(a, b, mask), "ssim": ssim(a, b, mask),
            "css": css(a, b, mask, variant="product"), "lncc": lncc(a, b, mask),
            "mi": mi(a, b, mask, bins=32), "bc": bc(a, b, mask),
        }  # fmt: skip
        assert set(got) == set(PAIR_METRICS)
        for k in PAIR_METRICS:
            assert got[k].shape == (5,) and got[k].dtype == torch.float64
            assert torch.allclose(got[k], want[k].double(), atol=1e-6), k


def test_chunk_size_does_not_change_results() -> None:
    a, b, m = _data()
    one = pair_metrics(a, b, m, chunk=1, mi_bins=20)
    many = pair_metrics(a, b, m, chunk=64, mi_bins=20)
    for k in PAIR_METRICS:
        assert torch.allclose(one[k], many[k], atol=1e-6), k


def test_registry_directions() -> None:
    assert higher_is_better("ssim") and higher_is_better("psnr") and higher_is_better("mi")
    assert not higher_is_better("lpips_alex") and not higher_is_better("mae") and not higher_is_better("fid")
    assert all(name in REGISTRY for name in PAIR_METRICS)
    assert "lower is better" in REGISTRY["lpips_vgg"].note
