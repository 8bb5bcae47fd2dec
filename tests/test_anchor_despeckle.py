"""The affine anchors' despeckle (issue 12): a Gaussian smoothing of the source inside the fan, its width fitted
unpaired so that the anchor's speckle is as fine as the target's. Checked against scipy's normalized convolution,
on frames whose true smoothing is known, through checkpoint metadata and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor import (
    AffineMatch,
    anchor_from_metadata,
    anchor_metadata,
    fit_despeckle,
    high_frequency_share,
    masked_blur,
)


def _fan(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Speckle-like uint8 frames (i.i.d. gamma texture on a smooth ramp) inside a wedge; black outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    fov = np.abs(xx - size / 2) <= 2 + yy * 0.45
    ramp = 60 + 2 * yy
    f = np.clip(ramp * rng.gamma(4.0, 0.25, (n, size, size)), 1, 255)
    return np.where(fov, f, 0).round().astype(np.uint8), np.broadcast_to(fov, (n, size, size)).copy()


def _scipy_masked_blur(v: np.ndarray, fg: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    kw = {"sigma": sigma, "mode": "constant", "truncate": r / sigma}
    num = gaussian_filter(v * fg, **kw)
    den = gaussian_filter(fg.astype(np.float64), **kw)
    return np.where(fg, num / np.maximum(den, 1e-6), v)


def test_masked_blur_is_scipys_normalized_convolution_inside_the_fan():
    frames, fov = _fan(2, 0)
    v = frames.astype(np.float64)
    got = masked_blur(torch.from_numpy(v).float()[:, None], torch.from_numpy(fov)[:, None], 0.7)[:, 0].numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i], _scipy_masked_blur(v[i], fov[i], 0.7), atol=1e-3)
    assert (got[~fov] == 0).all()  # nothing bleeds outside the fan


def test_despeckled_affine_map_is_the_map_of_the_blurred_source():
    frames, _ = _fan(2, 1)
    x = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]
    a = AffineMatch(80.0, 30.0, 60.0, 45.0, sigma=0.8)
    y = (a(x)[:, 0].double().numpy() + 1) * 127.5
    fg = frames > 0  # the anchor's foreground: every non-black level
    blurred = np.stack([_scipy_masked_blur(f.astype(np.float64), m, 0.8) for f, m in zip(frames, fg)])
    expect = np.clip((blurred - 80.0) * 1.5 + 60.0, 0, 255)
    np.testing.assert_allclose(y[fg], expect[fg], atol=2e-3)
    assert (y[~fg] == 0).all()
    assert torch.equal(AffineMatch(80.0, 30.0, 60.0, 45.0, sigma=0.0)(x), AffineMatch(80.0, 30.0, 60.0, 45.0)(x))
    with pytest.raises(SonoshiftError, match="sigma"):
        AffineMatch(80.0, 30.0, 60.0, 45.0, sigma=-1.0)


@pytest.mark.parametrize("true_sigma", [0.0, 0.6, 1.0])
def test_fit_recovers_the_smoothing_that_separates_the_two_domains(true_sigma):
    src, src_fov = _fan(12, 2)
    tgt, tgt_fov = _fan(12, 3)  # other frames (unpaired), smoothed by a known Gaussian and given other levels
    if true_sigma:
        tgt = np.stack([_scipy_masked_blur(f.astype(np.float64), m, true_sigma) for f, m in zip(tgt, tgt_fov)])
    tgt = np.where(tgt_fov, np.clip(tgt * 0.6 + 20, 1, 255), 0).round().astype(np.uint8)
    base = AffineMatch(100.0, 40.0, 80.0, 25.0)
    fitted = fit_despeckle(base, (src, src_fov), (tgt, tgt_fov))
    assert fitted.stats == base.stats and fitted.sigma == pytest.approx(true_sigma, abs=0.1)
    # the share is a property of texture, not of grey levels: an affine map of the frames leaves it unchanged
    t = torch.from_numpy(src.astype(np.float32))[:, None]
    m = torch.from_numpy(src_fov)[:, None]
    assert high_frequency_share(t * 0.5 + 10 * m, m) == pytest.approx(high_frequency_share(t, m), rel=1e-4)


def test_despeckle_sigma_travels_in_the_metadata_and_through_onnx():
    import onnxruntime as ort

    from sonoshift.deploy.export import graph_bytes
    from sonoshift.deploy.graphs import NoiseSpec

    a = AffineMatch([70.0, 90.0, 110.0], [20.0, 25.0, 30.0], [60.0, 50.0, 40.0], [30.0, 30.0, 30.0], sigma=0.9)
    meta = anchor_metadata(a)
    b = anchor_from_metadata(meta, "s", "t", (24, 24))
    assert meta["sigma"] == 0.9 and b.sigma == 0.9 and b.stats == a.stats
    assert "sigma" not in anchor_metadata(AffineMatch(*a.stats))  # old checkpoints' metadata is unchanged
    sess = ort.InferenceSession(graph_bytes(a, NoiseSpec(), (24, 24)))
    frames, _ = _fan(2, 4, size=24)
    x = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], a(x).numpy(), atol=1e-4)
