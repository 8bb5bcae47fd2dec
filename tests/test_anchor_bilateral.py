"""The affine anchors' edge-preserving despeckle (issue 12): a bilateral filter of the mapped levels inside the
fan, its range sigma fitted unpaired so that the anchor's speckle is as fine as the target's. Checked against a
pixel-by-pixel loop, on frames whose true filter is known, on a step edge, through checkpoint metadata and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_anchor_despeckle import _fan
from test_ddgan_method import tiny_run  # noqa: F401  (the fixture is re-exported)

from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor import (
    AffineMatch,
    anchor_from_metadata,
    anchor_metadata,
    fit_despeckle,
    masked_bilateral,
    masked_blur,
)


def _loop_bilateral(v: np.ndarray, fg: np.ndarray, sigma: float, range_sigma: float, r: int = 2) -> np.ndarray:
    """The definition, one pixel at a time: weighted mean of the window's field-of-view pixels."""
    h, w = v.shape
    out = v.copy()
    for i in range(h):
        for j in range(w):
            if not fg[i, j]:
                continue
            num = den = 0.0
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    y, x = i + di, j + dj
                    if 0 <= y < h and 0 <= x < w and fg[y, x]:
                        d2, dv2 = di * di + dj * dj, (v[y, x] - v[i, j]) ** 2
                        wt = np.exp(-d2 / (2 * sigma**2) - dv2 / (2 * range_sigma**2))
                        num, den = num + wt * v[y, x], den + wt
            out[i, j] = num / den
    return out


def test_masked_bilateral_is_the_pixel_loop_inside_the_fan():
    frames, fov = _fan(2, 0, size=20)
    v = frames.astype(np.float64)
    got = masked_bilateral(torch.from_numpy(v).float()[:, None], torch.from_numpy(fov)[:, None], 1.0, 20.0)
    got = got[:, 0].double().numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i], _loop_bilateral(v[i], fov[i], 1.0, 20.0), atol=1e-3)
    assert (got[~fov] == 0).all()


def test_bilateral_keeps_a_step_that_the_gaussian_blurs():
    rng = np.random.default_rng(0)
    step = np.where(np.arange(24)[None, :] < 12, 40.0, 200.0) + rng.normal(0, 6, (24, 24))
    x = torch.from_numpy(step).float()[None, None]
    fg = torch.ones_like(x, dtype=torch.bool)
    bil = masked_bilateral(x, fg, 1.0, 20.0)[0, 0].numpy()
    gau = masked_blur(x, fg, 1.0)[0, 0].numpy()
    edge = slice(11, 13)
    assert np.abs(bil[:, edge] - step[:, edge]).mean() < 5  # the step stays where it is
    assert np.abs(gau[:, edge] - step[:, edge]).mean() > 30  # the Gaussian of the same width smears it
    flat = slice(2, 9)  # and away from the step both smooth the noise
    assert bil[:, flat].std() < 0.6 * step[:, flat].std()


def test_bilateral_anchor_filters_the_mapped_levels():
    frames, _ = _fan(2, 1, size=20)
    x = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]
    a = AffineMatch(80.0, 30.0, 60.0, 45.0, range_sigma=25.0)
    assert a.sigma == 1.0  # the default spatial width
    y = (a(x)[:, 0].double().numpy() + 1) * 127.5
    fg = frames > 0
    mapped = np.where(fg, np.clip((frames - 80.0) * 1.5 + 60.0, 0, 255), 0)
    expect = np.stack([_loop_bilateral(f, m, 1.0, 25.0) for f, m in zip(mapped, fg)])
    np.testing.assert_allclose(y[fg], expect[fg], atol=2e-3)
    assert (y[~fg] == 0).all()
    with pytest.raises(SonoshiftError, match="range sigma"):
        AffineMatch(80.0, 30.0, 60.0, 45.0, range_sigma=-1.0)


@pytest.mark.parametrize("true_range", [25.0, 40.0, 60.0])
def test_fit_recovers_the_bilateral_filter_that_separates_the_two_domains(true_range):
    src, src_fov = _fan(16, 2, size=32)
    tgt, tgt_fov = _fan(16, 3, size=32)  # other frames (unpaired), filtered by a known bilateral
    tgt = np.stack([_loop_bilateral(f.astype(np.float64), m, 1.0, true_range) for f, m in zip(tgt, tgt_fov)])
    tgt = np.where(tgt_fov, np.clip(tgt, 1, 255), 0).round().astype(np.uint8)
    base = AffineMatch(100.0, 40.0, 100.0, 40.0)  # levels already alike: the filter alone separates the domains
    fitted = fit_despeckle(base, (src, src_fov), (tgt, tgt_fov), kind="bilateral")
    # within one step of the grid (5 grey levels here): the frames' own speckle differs a little
    assert fitted.stats == base.stats and fitted.range_sigma == pytest.approx(true_range, abs=5.0)
    with pytest.raises(SonoshiftError, match="unknown despeckle"):
        fit_despeckle(base, (src, src_fov), (tgt, tgt_fov), kind="median")


def test_bilateral_despeckle_travels_in_the_metadata_and_through_onnx():
    import onnxruntime as ort

    from sonoshift.deploy.export import graph_bytes
    from sonoshift.deploy.graphs import NoiseSpec

    a = AffineMatch([70.0, 90.0, 110.0], [20.0, 25.0, 30.0], [60.0, 50.0, 40.0], [30.0, 30.0, 30.0], range_sigma=15.0)
    meta = anchor_metadata(a)
    b = anchor_from_metadata(meta, "s", "t", (24, 24))
    assert meta["range_sigma"] == 15.0 and b.range_sigma == 15.0 and b.sigma == 1.0 and b.stats == a.stats
    assert "range_sigma" not in anchor_metadata(AffineMatch(*a.stats, sigma=0.9))  # Gaussian checkpoints unchanged
    sess = ort.InferenceSession(graph_bytes(a, NoiseSpec(), (24, 24)))
    frames, _ = _fan(2, 4, size=28)  # another size than traced
    x = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], a(x).numpy(), atol=1e-4)


def test_bilateral_anchored_ddgan_fits_saves_and_exports_its_despeckle(tiny_run):
    from test_ddgan_method import TINY_DDGAN

    from sonoshift.config import load_config
    from sonoshift.deploy.export import export_onnx
    from sonoshift.deploy.runtime import OnnxTranslator
    from sonoshift.engine.checkpoint import read_model
    from sonoshift.methods import load_translator
    from sonoshift.methods.anchor import fit_affine_prepared
    from sonoshift.methods.ddgan import DDGANConfig, train_ddgan

    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "generator.zero_init=true",
                                          "generator.output=residual", "anchor=depth_affine", "anchor_despeckle=true",
                                          "anchor_despeckle_kind=bilateral", "train.max_steps=2"])
    out = tiny_run["root"] / "dd_bilateral"
    train_ddgan(tiny_run["data"], cfg, out, progress=False)
    plain = fit_affine_prepared(tiny_run["data"], "train", "handheld", "cart", depth=True)
    expect = fit_despeckle(plain, *[
        (np.load(tiny_run["data"] / "cache" / "train" / f"{d}.npy"),) * 2 for d in ("handheld", "cart")
    ], kind="bilateral")  # no masks in this dataset: the non-black pixels are the field of view
    meta = read_model(out).state["metadata"]["anchor"]
    assert meta["range_sigma"] == expect.range_sigma and meta["stats"] == [list(r) for r in plain.stats]
    tr = load_translator(out)
    assert tr.anchor.range_sigma == expect.range_sigma and tr.anchor.sigma == 1.0
    onnx_tr = OnnxTranslator(export_onnx(out, tiny_run["root"] / "dd_bilateral.onnx"))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = tr(x, generator=torch.Generator().manual_seed(7))
    assert (y - onnx_tr(x, generator=torch.Generator().manual_seed(7))).abs().max().item() <= 1e-3
