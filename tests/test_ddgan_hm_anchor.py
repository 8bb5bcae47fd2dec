"""The histogram anchor (x_0 = hm(source) + correction) and the structure content anchor of the diffusion
translators (issue 12): an untrained translator is the histogram-matching baseline, checked against scikit-image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from skimage.exposure import match_histograms
from test_ddgan_method import TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)
from torch import nn

from sonoshift.baselines.histogram_match import HistogramMatch, reference_from_frames
from sonoshift.config import load_config
from sonoshift.diffusion import ScheduleConfig, schedule_from_config
from sonoshift.diffusion.sampler import sample
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.methods.cascade import CascadeConfig, CascadeTranslator
from sonoshift.methods.cascade import build as build_cascade
from sonoshift.methods.cyclegan import CycleGANModel, build_generator
from sonoshift.methods.ddgan import DDGANConfig, DDGANTranslator, TargetFrames, build, train_ddgan
from sonoshift.metrics import lncc
from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig
from sonoshift.objectives.ddgan import generator_loss, structure_loss

RES = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), nz=4, z_emb_dim=8, t_emb_dim=8,
                 output="residual")
ANCHORED = ["generator.zero_init=true", "generator.output=residual", "anchor=histogram_match"]


def _uint8_frames(seed: int, n: int, lo: int, hi: int, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.integers(lo, hi, (n, size, size)).astype(np.uint8)
    f[:, :, :3] = 0  # black margin outside the fan: left at 0 by the map
    return f


def _signed(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1)[:, None]


def _skimage_matched(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Each source frame's foreground matched to the pooled foreground of ``ref`` by scikit-image, in [-1, 1]."""
    out = np.zeros(src.shape, np.float64)
    pool = ref[ref > 0].astype(np.float64)
    for i, f in enumerate(src):
        fg = f > 0
        out[i][fg] = match_histograms(f[fg].astype(np.float64), pool)
    return out / 127.5 - 1


@pytest.mark.parametrize("start", ["noise", "partial"])
def test_untrained_hm_anchored_ddgan_returns_the_histogram_matched_source(start):
    ref, src = _uint8_frames(0, 6, 90, 250), _uint8_frames(1, 3, 10, 120)
    hm = HistogramMatch(*reference_from_frames(ref), "handheld", "cart", (16, 16))
    torch.manual_seed(0)
    s = schedule_from_config(ScheduleConfig(num_steps=4, start=start, t_max=0.25 if start == "partial" else 1.0))
    tr = DDGANTranslator(DDGANUNet(RES, image_size=16), s, start, (16, 16), "handheld", "cart", anchor=hm)
    x = _signed(src)
    y = tr(x, generator=torch.Generator().manual_seed(0))
    expect = torch.from_numpy(_skimage_matched(src, ref)).float()[:, None]
    torch.testing.assert_close(y, expect, rtol=0, atol=2e-3)
    assert float((y - x).abs().mean()) > 0.3  # the anchor moved the grey levels a long way


def test_untrained_hm_anchored_cascade_returns_hm_and_sees_the_cyclegan_output():
    ref, src = _uint8_frames(2, 6, 90, 250), _uint8_frames(3, 2, 10, 120)
    hm = HistogramMatch(*reference_from_frames(ref), "handheld", "cart", (16, 16))
    cyclegan = build_generator(CycleGANModel(ngf=4, n_blocks=1))
    for p in cyclegan.parameters():
        nn.init.normal_(p, 0.0, 0.2)
    torch.manual_seed(1)
    G = DDGANUNet(dataclasses.replace(RES, in_channels=3), image_size=16)
    seen = []
    G.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    tr = CascadeTranslator(G, schedule_from_config(ScheduleConfig(num_steps=4)), "noise", (16, 16), "handheld",
                           "cart", pre=cyclegan, anchor=hm)
    x = _signed(src)
    y = tr(x, generator=torch.Generator().manual_seed(0))
    expect = torch.from_numpy(_skimage_matched(src, ref)).float()[:, None]
    torch.testing.assert_close(y, expect, rtol=0, atol=2e-3)
    with torch.no_grad():
        translated = cyclegan(x).clamp(-1, 1)
    # generator input: x_t, hm(source), CycleGAN output, at every one of the 4 steps
    assert len(seen) == 4 and all(s.shape[1] == 3 for s in seen)
    torch.testing.assert_close(seen[-1][:, 2:3], translated)
    torch.testing.assert_close(seen[-1][:, 1:2], expect, rtol=0, atol=2e-3)


def test_fitted_anchor_is_the_pooled_target_histogram_and_travels_in_the_checkpoint(tiny_run):
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", *ANCHORED,
                                          "train.max_steps=1"])
    ds = TargetFrames(tiny_run["data"], cfg.data)
    method = build(cfg, ds, torch.device("cpu"))
    frames = np.load(tiny_run["data"] / "cache" / "train" / "cart.npy")
    counts = np.bincount(frames.reshape(-1), minlength=256)[1:]
    present = np.nonzero(counts)[0]
    assert method.hm.levels == pytest.approx(present + 1.0)
    assert method.hm.quantiles == pytest.approx(np.cumsum(counts[present]) / counts.sum())
    # the training condition is hm(G_{T->S}(x0))
    x0 = torch.stack([ds[i]["target"] for i in range(3)])
    reverse = load_translator(tiny_run["cg"], reverse=True)
    torch.testing.assert_close(method.condition(x0), method.hm(reverse(x0)))
    out = tiny_run["root"] / "dd_hm"
    train_ddgan(tiny_run["data"], cfg, out, progress=False)
    assert read_model(out).state["metadata"]["anchor"]["kind"] == "histogram_match"
    tr = load_translator(out)
    assert tr.anchor.levels == method.hm.levels and tr.anchor.quantiles == method.hm.quantiles
    x = x0[:2]
    ref = sample(tr.G, schedule_from_config(cfg.schedule), method.hm(x), torch.Generator().manual_seed(4))
    torch.testing.assert_close(tr(x, generator=torch.Generator().manual_seed(4)), ref)


def test_hm_anchored_cascade_needs_three_input_channels(tiny_run):
    base = [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", *ANCHORED]
    ds = TargetFrames(tiny_run["data"], load_config(CascadeConfig, None, base).data)
    with pytest.raises(SonoshiftError, match="in_channels must be 3"):
        build_cascade(load_config(CascadeConfig, None, base), ds, torch.device("cpu"))
    m = build_cascade(load_config(CascadeConfig, None, [*base, "generator.in_channels=3"]), ds, torch.device("cpu"))
    x0 = torch.stack([ds[i]["target"] for i in range(2)])
    cond = m.condition(x0)
    forward, reverse = load_translator(tiny_run["cg"]), load_translator(tiny_run["cg"], reverse=True)
    torch.testing.assert_close(cond[:, :1], m.hm(reverse(x0)))
    torch.testing.assert_close(cond[:, 1:], forward(reverse(x0)))
    with pytest.raises(SonoshiftError, match="see_condition"):
        build_cascade(load_config(CascadeConfig, None, [*base, "generator.in_channels=3",
                                                        "discriminator.see_condition=true"]), ds, torch.device("cpu"))


def test_structure_loss_is_one_minus_the_lncc_metric():
    g = torch.Generator().manual_seed(5)
    a = torch.rand(3, 1, 20, 20, generator=g) * 2 - 1
    b = (0.6 * a + 0.4 * (torch.rand(3, 1, 20, 20, generator=g) * 2 - 1)).clamp(-1, 1)
    # [-1, 1] images have 4x the variance of [0, 1] ones: eps 4e-5 here is the metric's 1e-5
    expect = 1 - float(lncc((a + 1) / 2, (b + 1) / 2).mean())
    assert float(structure_loss(a, b, eps=4e-5)) == pytest.approx(expect, abs=1e-5)
    assert 0.1 < expect < 0.9
    assert float(structure_loss(0.5 * a + 0.2, a)) == pytest.approx(0.0, abs=1e-3)  # grey-level maps are free
    assert float(structure_loss(-a, a)) == pytest.approx(2.0, abs=1e-3)
    p = a.clone().requires_grad_(True)
    structure_loss(p, b).backward()
    assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_generator_loss_adds_the_structure_term_with_its_weight():
    class Half(nn.Module):
        """Predicts x_0 = half the last condition channel (through the generator interface)."""

        cfg = UNetConfig(nz=2)

        def forward(self, x, t, z):
            return 0.5 * x[:, -1:]

    class ZeroD(nn.Module):
        cfg = type("C", (), {"see_condition": False})()

        def forward(self, x_t, x_next, t, cond=None):
            return torch.zeros(x_t.shape[0])

    s = schedule_from_config(ScheduleConfig(num_steps=4))
    cond = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(6)) * 2 - 1
    loss, p = generator_loss(Half(), ZeroD(), s, cond, cond, torch.Generator().manual_seed(0), structure_weight=2.0)
    assert float(p["structure"]) == pytest.approx(0.0, abs=1e-3)
    flipped = torch.cat([-cond, cond], dim=1)  # the anchor is the first condition channel: -cond, LNCC -1
    loss, p = generator_loss(Half(), ZeroD(), s, cond, flipped, torch.Generator().manual_seed(0), structure_weight=2.0)
    assert float(p["structure"]) == pytest.approx(2.0, abs=5e-3)
    assert float(loss) == pytest.approx(np.log(2.0) + 2.0 * float(p["structure"]), abs=1e-5)


def test_smooth_correction_is_the_gaussian_filtered_correction():
    from scipy.ndimage import gaussian_filter

    raw_cfg = dataclasses.replace(RES, zero_init=False)
    torch.manual_seed(7)
    raw = DDGANUNet(raw_cfg, image_size=16)
    smooth = DDGANUNet(dataclasses.replace(raw_cfg, correction_sigma=2.0), image_size=16)
    smooth.load_state_dict(raw.state_dict())  # same weights: the low-pass is not a parameter
    g = torch.Generator().manual_seed(8)
    x, t, z = torch.randn(2, 2, 16, 16, generator=g), torch.tensor([0, 3]), torch.randn(2, 4, generator=g)
    with torch.no_grad():
        d_raw = (raw(x, t, z) - x[:, 1:2]).numpy()
        d_smooth = (smooth(x, t, z) - x[:, 1:2]).numpy()
    # scipy: radius int(3 sigma + 0.5) = 6, edge-replicating padding
    expect = np.stack([gaussian_filter(d, 2.0, mode="nearest", truncate=3.0) for d in d_raw[:, 0]])[:, None]
    np.testing.assert_allclose(d_smooth, expect, atol=1e-5)
    assert np.abs(np.diff(d_smooth, axis=-1)).mean() < 0.5 * np.abs(np.diff(d_raw, axis=-1)).mean()
    # zero-initialized: still returns its condition exactly
    zero = DDGANUNet(dataclasses.replace(RES, correction_sigma=2.0), image_size=16)
    with torch.no_grad():
        torch.testing.assert_close(zero(x, t, z), x[:, 1:2], rtol=0, atol=0)
    with pytest.raises(SonoshiftError, match="residual"):
        DDGANUNet(dataclasses.replace(RES, output="tanh", correction_sigma=2.0), image_size=16)


def test_histogram_match_module_equals_the_numpy_map():
    """The traceable tensor-op map (ONNX export) against the numpy np.unique/np.interp map, frame by frame."""
    ref, src = _uint8_frames(4, 6, 90, 250), _uint8_frames(5, 3, 10, 120)
    src[:, :4] = 0  # black outside the fan stays black
    for levels, quantiles in (reference_from_frames(ref), ((77.0,), (1.0,))):  # also a one-level target
        hm = HistogramMatch(levels, quantiles, "handheld", "cart", (16, 16))
        expect = np.stack([hm.map_frame(f) for f in src]) / 127.5 - 1.0
        got = hm.module()(_signed(src))[:, 0].double().numpy()
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5)
        assert (got[:, :4] == -1).all()
