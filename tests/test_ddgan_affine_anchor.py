"""The affine anchor of the diffusion translators (x_0 = a(source) + correction, a global linear grey map fitted on
the training split): its statistics against numpy, its map, its exact structure keeping, and that it travels in
checkpoints (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ddgan_method import TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)

from sonoshift.config import load_config
from sonoshift.diffusion import ScheduleConfig, schedule_from_config
from sonoshift.diffusion.sampler import sample
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.methods.anchor import AffineMatch
from sonoshift.methods.ddgan import DDGANConfig, DDGANTranslator, TargetFrames, build, train_ddgan
from sonoshift.metrics import lncc
from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig

RES = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), nz=4, z_emb_dim=8, t_emb_dim=8,
                 output="residual")
AFFINE = ["generator.zero_init=true", "generator.output=residual", "anchor=affine"]


def _signed(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]


def _frames(seed: int, n: int, lo: int, hi: int) -> np.ndarray:
    f = np.random.default_rng(seed).integers(lo, hi, (n, 16, 16)).astype(np.uint8)
    f[:, :, :3] = 0  # the black outside the fan
    return f


def test_affine_map_moves_the_foreground_moments_and_leaves_black_alone():
    src = _frames(0, 4, 20, 140)
    a = AffineMatch(80.0, 30.0, 60.0, 45.0)
    y = ((a(_signed(src))[:, 0].double().numpy() + 1) * 127.5)
    fg = src > 0
    expect = np.clip((src.astype(np.float64) - 80.0) * 1.5 + 60.0, 0, 255)
    np.testing.assert_allclose(y[fg], expect[fg], atol=1e-3)
    assert (y[~fg] == 0).all()
    # a map fitted on these very frames gives them the target's foreground mean and std (up to clipping)
    fit = AffineMatch(src[fg].mean(), src[fg].std(), 120.0, 20.0)
    z = (fit(_signed(src))[:, 0].double().numpy() + 1) * 127.5
    assert z[fg].mean() == pytest.approx(120.0, abs=0.01) and z[fg].std() == pytest.approx(20.0, abs=0.01)
    with pytest.raises(SonoshiftError, match="spread"):
        AffineMatch(80.0, 0.0, 60.0, 45.0)


def test_affine_anchor_keeps_local_structure_where_histogram_matching_does_not():
    from sonoshift.baselines.histogram_match import HistogramMatch, reference_from_frames

    rng = np.random.default_rng(1)
    src = rng.gamma(2.0, 20.0, (4, 32, 32)).clip(1, 150).astype(np.uint8)  # speckle-like, skewed
    ref = rng.integers(1, 256, (4, 32, 32)).astype(np.uint8)  # a flat target histogram: a strongly curved map
    x = _signed(src)
    aff = AffineMatch(float(src.mean()), float(src.std()), 90.0, 30.0)(x)  # no clipping: 1..150 -> 40..160
    hm = HistogramMatch(*reference_from_frames(ref), "a", "b", (32, 32))(x)
    keep_aff = float(lncc((aff + 1) / 2, (x + 1) / 2).mean())
    keep_hm = float(lncc((hm + 1) / 2, (x + 1) / 2).mean())
    assert keep_aff > 0.999 and keep_hm < keep_aff - 0.01


def test_untrained_affine_anchored_ddgan_returns_the_affine_map():
    src = _frames(2, 3, 10, 120)
    a = AffineMatch(60.0, 30.0, 100.0, 50.0)
    torch.manual_seed(0)
    tr = DDGANTranslator(DDGANUNet(RES, image_size=16), schedule_from_config(ScheduleConfig(num_steps=4)), "noise",
                         (16, 16), "handheld", "cart", anchor=a)
    y = tr(_signed(src), generator=torch.Generator().manual_seed(0))
    expect = np.where(src > 0, np.clip((src - 60.0) * (50 / 30) + 100.0, 0, 255), 0) / 127.5 - 1
    torch.testing.assert_close(y, torch.from_numpy(expect).float()[:, None], rtol=0, atol=1e-5)


def test_fitted_affine_anchor_is_the_pooled_source_and_target_moments_and_travels_in_the_checkpoint(tiny_run):
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", *AFFINE, "train.max_steps=1"])
    ds = TargetFrames(tiny_run["data"], cfg.data)
    method = build(cfg, ds, torch.device("cpu"))
    cache = tiny_run["data"] / "cache" / "train"
    assert not (cache / "cart.mask.npy").exists()  # no masks: the non-black pixels are the field of view
    s, t = (np.load(cache / f"{d}.npy") for d in ("handheld", "cart"))
    s, t = s[s > 0].astype(np.float64), t[t > 0].astype(np.float64)
    assert np.ravel(method.hm.stats) == pytest.approx([s.mean(), s.std(), t.mean(), t.std()], rel=1e-6)
    out = tiny_run["root"] / "dd_affine"
    train_ddgan(tiny_run["data"], cfg, out, progress=False)
    assert read_model(out).state["metadata"]["anchor"]["kind"] == "affine"
    tr = load_translator(out)
    assert np.ravel(tr.anchor.stats) == pytest.approx(np.ravel(method.hm.stats))
    x = torch.stack([ds[i]["target"] for i in range(2)])
    ref = sample(tr.G, schedule_from_config(cfg.schedule), method.hm(x), torch.Generator().manual_seed(4))
    torch.testing.assert_close(tr(x, generator=torch.Generator().manual_seed(4)), ref)


def test_depth_anchor_undoes_a_depth_gain_and_equals_the_row_moments():
    """Source frames = target-like frames with a different gain per row: the depth anchor, fitted on the two
    pools, maps them back (the global map cannot); its row statistics are scipy-smoothed row moments."""
    from scipy.ndimage import gaussian_filter1d

    from sonoshift.methods.anchor import DEPTH_SIGMA, fit_affine

    rng = np.random.default_rng(3)
    h = 32
    tgt = rng.integers(20, 200, (40, h, h)).astype(np.float64)
    tgt[:, :, :4] = 0
    gain = np.linspace(1.0, 0.4, h)[None, :, None]  # the source scanner loses brightness with depth
    src = np.where(tgt > 0, np.clip(tgt * gain, 1, 255), 0).round().astype(np.uint8)
    tgt = tgt.astype(np.uint8)

    fov = np.ones(tgt.shape, bool)
    fov[:, :, :4] = False
    depth = fit_affine((src, fov), (tgt, fov), depth=True)
    flat = fit_affine((src, fov), (tgt, fov))
    assert depth.kind == "depth_affine" and flat.kind == "affine" and len(depth.stats[0]) == h
    f, fg = src.astype(np.float64), fov
    n, s1 = (gaussian_filter1d(a, DEPTH_SIGMA * h, mode="nearest")
             for a in (fg.sum((0, 2)) * 1.0, (f * fg).sum((0, 2))))
    np.testing.assert_allclose(depth.stats[0], s1 / n, rtol=1e-9)
    err = {k: float(np.abs((a(_signed(src))[:, 0].numpy() + 1) * 127.5 - tgt)[tgt > 0].mean())
           for k, a in (("depth", depth), ("flat", flat))}
    assert err["depth"] < 0.5 * err["flat"]
    # a frame of another height: the row profiles are resampled, the map still runs
    assert depth(_signed(src[:2, ::2, ::2])).shape == (2, 1, h // 2, h // 2)


def test_prepared_fit_counts_black_pixels_inside_the_field_of_view(tiny_run, tmp_path):
    import shutil

    from sonoshift.methods.anchor import fit_affine_prepared

    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    cache = data / "cache" / "train"
    for d in ("handheld", "cart"):
        frames = np.load(cache / f"{d}.npy")
        fov = np.zeros(frames.shape, np.uint8)
        fov[:, 2:, 1:-1] = 1
        np.save(cache / f"{d}.mask.npy", fov)
    a = fit_affine_prepared(data, "train", "handheld", "cart")
    expect = []
    for d in ("handheld", "cart"):
        v = np.load(cache / f"{d}.npy")[:, 2:, 1:-1].astype(np.float64)
        expect += [v.mean(), v.std()]
    assert np.ravel(a.stats) == pytest.approx(expect, rel=1e-6)


def test_depth_anchored_ddgan_exports_to_onnx_with_the_anchor_in_the_graph(tiny_run):
    from sonoshift.deploy.export import export_onnx
    from sonoshift.deploy.runtime import OnnxTranslator

    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "generator.zero_init=true",
                                          "generator.output=residual", "anchor=depth_affine", "train.max_steps=2"])
    out = tiny_run["root"] / "dd_depth"
    train_ddgan(tiny_run["data"], cfg, out, progress=False)
    torch_tr = load_translator(out)
    assert torch_tr.anchor.kind == "depth_affine"
    onnx_tr = OnnxTranslator(export_onnx(out, tiny_run["root"] / "dd_depth.onnx"))
    for b, h, w in ((1, 16, 16), (2, 32, 24)):  # the row profiles are resampled to the input height in the graph
        x = torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1
        y = torch_tr(x, generator=torch.Generator().manual_seed(7))
        assert (y - onnx_tr(x, generator=torch.Generator().manual_seed(7))).abs().max().item() <= 1e-3
