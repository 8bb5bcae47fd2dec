"""Baselines: histogram matching against scikit-image, the blurred translator and its validation-chosen sigma."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.exposure import match_histograms

from sonoshift.baselines import Blurred, choose_sigma, fit_histogram_match, gaussian_blur, load_histogram_match
from sonoshift.baselines.histogram_match import HistogramMatch, reference_from_frames
from sonoshift.metrics import bc


def _frames(seed: int, n: int, lo: int, hi: int, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.integers(lo, hi, (n, size, size)).astype(np.uint8)
    f[:, :, :4] = 0  # black margin, left alone by the map
    return f


def _signed(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]


def _levels(x: torch.Tensor) -> np.ndarray:
    return ((x[:, 0] + 1) * 127.5).numpy()


def test_histogram_match_equals_scikit_image_on_the_foreground():
    src, ref = _frames(0, 1, 20, 120), _frames(1, 1, 90, 250)
    levels, q = reference_from_frames(ref)
    hm = HistogramMatch(levels, q, "a", "b", (24, 24))
    out = _levels(hm(_signed(src)))[0]
    fg = src[0] > 0
    expect = match_histograms(src[0][fg].astype(np.float64), ref[0][ref[0] > 0].astype(np.float64))
    np.testing.assert_allclose(out[fg], expect, atol=1e-3)
    assert (out[~fg] == 0).all()
    # monotone: the grey order of the source is kept
    order = np.argsort(src[0][fg], kind="stable")
    assert (np.diff(out[fg][order]) >= -1e-9).all()


def test_fitted_histogram_match_moves_the_histogram_to_the_target(tmp_path):
    data = tmp_path / "data"
    (data / "cache" / "train").mkdir(parents=True)
    target = _frames(2, 20, 100, 250)
    np.save(data / "cache" / "train" / "cart.npy", target)
    hm = fit_histogram_match(data, "handheld", "cart")
    src = _frames(3, 4, 10, 90)
    out = hm(_signed(src))
    # 32 bins: 80 source levels cannot fill 150 target levels one by one, but their spread matches
    before = bc((_signed(src) + 1) / 2, (_signed(target[:4]) + 1) / 2, bins=32)
    after = bc((out + 1) / 2, (_signed(target[:4]) + 1) / 2, bins=32)
    assert float(before.max()) < 0.3 and float(after.min()) > 0.9
    again = load_histogram_match(hm.save(tmp_path / "hm.json"))
    torch.testing.assert_close(again(_signed(src)), out)


def test_depth_affine_baseline_undoes_a_depth_gain_of_the_target_scanner(tmp_path):
    from sonoshift.baselines import make_baseline

    rng = np.random.default_rng(5)
    h = 40
    source = rng.integers(60, 200, (30, h, 32)).astype(np.float64)
    gain = np.linspace(1.2, 0.3, h)[None, :, None]  # the target scanner darkens with depth
    target = np.clip(source * gain, 1, 255)
    source[:, :, :3] = target[:, :, :3] = 0  # black margin outside the field of view
    cache = tmp_path / "data" / "cache" / "train"
    cache.mkdir(parents=True)
    np.save(cache / "handheld.npy", source.round().astype(np.uint8))
    np.save(cache / "cart.npy", target.round().astype(np.uint8))
    tr, label = make_baseline("depth_affine", tmp_path / "data", "handheld", "cart", tmp_path)
    assert tr.method == "depth_affine" and tr.image_size == (h, 32) and "depth" in label
    test = rng.integers(60, 200, (6, h, 32)).astype(np.float64)
    test[:, :, :3] = 0
    out = _levels(tr(_signed(test.astype(np.uint8))))
    fg = test > 0
    assert (out[~fg] == 0).all()
    # per-row foreground means follow the target scanner's depth profile (numpy, independent of the fit)
    rows_out = np.array([out[:, r][fg[:, r]].mean() for r in range(h)])
    rows_want = np.array([np.clip(test[:, r][fg[:, r]] * gain[0, r, 0], 1, 255).mean() for r in range(h)])
    assert np.abs(rows_out - rows_want).max() < 0.06 * 255
    rows_raw = np.array([test[:, r][fg[:, r]].mean() for r in range(h)])
    assert np.abs(rows_raw - rows_want).max() > 0.25 * 255  # the check above is not met by the raw frames


def test_gaussian_blur_matches_scipy_and_sigma_zero_is_a_copy():
    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = np.stack([gaussian_filter(a[0].numpy(), 1.25, mode="mirror", truncate=3.0) for a in x])
    np.testing.assert_allclose(gaussian_blur(x, 1.25)[:, 0].numpy(), ref, atol=1e-12)
    assert gaussian_blur(x, 0.0) is x


def test_choose_sigma_finds_the_blur_that_undoes_a_sharpening(tmp_path):
    # ground truth = smooth images; the "translator" returns them with added noise: blurring helps, up to a point
    rng = np.random.default_rng(4)
    smooth = np.stack([gaussian_filter(rng.uniform(0, 255, (32, 32)), 3.0) for _ in range(8)])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 200 + 20
    cache = tmp_path / "cache" / "val"
    cache.mkdir(parents=True)
    np.save(cache / "handheld.npy", smooth.round().astype(np.uint8))
    np.save(cache / "handheld.gt_cart.npy", smooth.round().astype(np.uint8))
    noise = torch.from_numpy(rng.normal(0, 0.15, (8, 1, 32, 32)).astype(np.float32))

    class Noisy:
        source_domain, target_domain, image_size = "handheld", "cart", (32, 32)

        def __init__(self):
            self.calls = 0

        def __call__(self, x, generator=None):
            out = x + noise[self.calls : self.calls + len(x)]
            self.calls += len(x)
            return out

    sigma, scores = choose_sigma(Noisy(), tmp_path, sigmas=(0.0, 1.0, 2.0, 6.0))
    assert sigma in (1.0, 2.0)
    assert scores[sigma] > scores[0.0] + 3 and scores[sigma] > scores[6.0]
    tr = Blurred(SimpleNamespace(source_domain="a", target_domain="b", image_size=(8, 8),
                                 __call__=None), 1.0)
    assert tr.method == "cyclegan_blur" and tr.image_size == (8, 8)


def test_unknown_baseline_is_refused():
    from sonoshift.baselines import make_baseline
    from sonoshift.errors import SonoshiftError

    with pytest.raises(SonoshiftError, match="unknown baseline"):
        make_baseline("nope", ".", "a", "b", ".")
