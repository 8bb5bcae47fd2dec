"""The scale check (judges/ga/scale_check.py): a wide-view polar refiner that finds the skull inside an ellipse that
took in the sac, against a drawn head and an edge-finding stand-in network; the decision rule against hand cases;
its storage by `ga build --scale-check`, ONNX Runtime, and the cross-validation that trains it per fold."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.cli.main import app
from sonoshift.downstream.segmenter import ModelConfig, Segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.head_fit import EllipseFit, HeadFit
from sonoshift.judges.ga.polar import PolarGrid
from sonoshift.judges.ga.polar_refiner import PolarRefiner
from sonoshift.judges.ga.scale_check import hc_ratios, scale_checked
from test_ga_polar import EdgeFinder, drawn
from test_ga_border_route import _tiny
from hc18_data import fake_hc18  # noqa: F401 (fixture)

WIDE = PolarGrid(angles=64, radii=96, s_min=0.45, s_max=1.9)
SKULL = (150.3, 118.7, 50.0, 38.0, 25.0)  # cx, cy, a, b, angle: the head drawn bright on a dark frame


def wide() -> PolarRefiner:
    return PolarRefiner(Segmenter(EdgeFinder(), ("outline",), WIDE.radii), WIDE, iterations=1, tta=False, blend=1.0)


def fit(cx, cy, a, b, angle, border=0.0, confidence=math.nan) -> HeadFit:
    return HeadFit(EllipseFit(cx=cx, cy=cy, a=a, b=b, angle=angle), border, confidence)


def grown(k: float, **kw) -> HeadFit:
    cx, cy, a, b, ang = SKULL
    return fit(cx, cy, a * k, b * k, ang, **kw)


def test_the_wide_view_finds_the_skull_inside_an_ellipse_that_took_in_the_sac():
    frame = drawn(SKULL)
    # measured 1.6 x the skull (the sac), on the skull, 1.1 x it; no head: NaN
    r = hc_ratios(wide(), [frame] * 4, [grown(1.6), grown(1.0), grown(1.1), HeadFit(None)], offset_px=0.0)
    assert r[0] == pytest.approx(1 / 1.6, abs=0.02)
    assert r[1] == pytest.approx(1.0, abs=0.02) and r[2] == pytest.approx(1 / 1.1, abs=0.02)
    assert math.isnan(r[3])
    # the ratio is of HCs whose semi-axes are grown by the estimator's offset (here 3 px each)
    off = hc_ratios(wide(), [frame], [grown(1.6)], offset_px=3.0)[0]
    cx, cy, a, b, ang = SKULL
    assert off == pytest.approx(ellipse_perimeter(a, b) / ellipse_perimeter(1.6 * a + 3, 1.6 * b + 3), abs=0.02)


def test_a_head_below_the_ratio_is_measured_again_and_the_better_agreeing_measurement_kept():
    frame = drawn(SKULL)
    calls = []

    def to_skull(frames, starts):  # a remeasure that lands on the skull, as the refiners would
        calls.append(len(frames))
        # it starts from the wide view's outline, i.e. near the skull, not from the sac
        assert all(abs(s.ellipse.a - SKULL[2]) < 3 for s in starts)
        return [grown(1.0, confidence=0.9) for _ in frames]

    sac, right = grown(1.6, border=0.03, confidence=0.4), grown(1.02, confidence=0.8)
    out, ratios = scale_checked(wide(), 0.85, [frame, frame], [sac, right], 0.0, to_skull)
    assert calls == [1]  # only the sac fit failed the check
    assert out[0].ellipse.a == pytest.approx(SKULL[2]) and out[0].outline_confidence == 0.9
    assert out[0].border_fraction == 0.03  # the first stage's border share stays the head's
    assert out[1] is right and ratios[0] == pytest.approx(1.0, abs=0.02)
    # a remeasure the wide view agrees with less than with the first measurement (2 x the skull: ratio 0.5 < 0.625)
    out, ratios = scale_checked(wide(), 0.85, [frame], [sac], 0.0, lambda f, s: [grown(2.0) for _ in f])
    assert out[0] is sac and ratios[0] == pytest.approx(1 / 1.6, abs=0.02)
    # no head found again: the first measurement stays
    assert scale_checked(wide(), 0.85, [frame], [sac], 0.0, lambda f, s: [None])[0][0] is sac
    # a lower ratio leaves the sac fit alone (0.625 is not below 0.6)
    assert scale_checked(wide(), 0.6, [frame], [sac], 0.0, to_skull)[0][0] is sac and calls == [1]


def test_the_blend_moves_each_measurement_toward_the_wide_view():
    frame = drawn(SKULL)
    cx, cy, a, b, ang = SKULL
    never = lambda f, s: pytest.fail("no head is below the ratio")  # noqa: E731
    for off in (0.0, 2.0):  # the blend sees semi-axes grown by the offset, as the polar refiner's blend does
        big = fit(cx + 4, cy, 1.1 * a - off, 1.1 * b - off, ang, border=0.02, confidence=0.7)
        (out,), _ = scale_checked(wide(), 0.85, [frame], [big], off, never, blend=0.5)
        e = out.ellipse
        assert e.a + off == pytest.approx(1.05 * a, abs=0.5) and e.b + off == pytest.approx(1.05 * b, abs=0.5)
        assert e.cx == pytest.approx(cx + 2, abs=0.5) and e.cy == pytest.approx(cy, abs=0.5)
        assert (out.border_fraction, out.outline_confidence) == (0.02, 0.7)
        (same,), _ = scale_checked(wide(), 0.85, [frame], [big], off, never)  # blend 0: the measurement stays
        assert same is big


def _wide_polar(path, fake_hc18, seed=0, radii=16):
    from sonoshift.downstream.hc18 import Hc18Config, PolarSpec, train_hc18_segmenter
    from sonoshift.downstream.segmenter import SegmenterTrainConfig

    cfg = Hc18Config(data_dir=str(fake_hc18), val_fraction=0.25, split_seed=seed, image_size=radii, head_polar=True,
                     model=ModelConfig(channels=(4, 8), strides=(2,)),
                     polar=PolarSpec(angles=16, radii=radii, s_min=0.45, s_max=1.9, size=0.25, iterations=1,
                                     tta=False, blend=1.0),
                     train=SegmenterTrainConfig(steps=2, batch_size=4))
    train_hc18_segmenter(cfg, path, progress=False)


def test_build_stores_the_scale_check_and_refuses_what_cannot_be_one(fake_hc18, tmp_path):
    from sonoshift.judges.ga.estimator import load_ga_estimator, measure
    from sonoshift.judges.ga.onnx_net import OrtNet, with_runtime
    from test_ga_estimator import head_image

    _tiny(tmp_path / "seg", 32)
    _tiny(tmp_path / "crop_like", 24)
    _wide_polar(tmp_path / "wide", fake_hc18)
    _wide_polar(tmp_path / "wide_other", fake_hc18, seed=1)
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "seg"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--scale-check", str(tmp_path / "wide"),
                                 "--scale-check-ratio", "0.8", "--scale-check-blend", "0.5"])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.scale_check is not None and est.scale_check_ratio == 0.8 and est.scale_check_blend == 0.5
    assert not est.polar
    assert est.scale_check.grid == PolarGrid(16, 16, 0.45, 1.9)
    assert (est.scale_check.iterations, est.scale_check.tta, est.scale_check.blend) == (1, False, 1.0)
    assert (tmp_path / "est" / "scale_check" / "model.safetensors").is_file()
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    fast = with_runtime(est, "onnx", threads=1)
    assert isinstance(fast.scale_check.segmenter.model, OrtNet)
    frames = [np.asarray(head_image(60, 80, 20.0, 14.0))]
    np.testing.assert_allclose(measure(fast, frames, [0.2])["hc_mm"], measure(est, frames, [0.2])["hc_mm"],
                               rtol=1e-4, equal_nan=True)
    from sonoshift.judges.ga.hc18_report import build_estimator

    with pytest.raises(SonoshiftError, match="not a polar refiner"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", scale_check=tmp_path / "crop_like")
    with pytest.raises(SonoshiftError, match="other HC18 images"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", scale_check=tmp_path / "wide_other")
    assert not (tmp_path / "bad").exists()


def test_cross_validation_trains_the_scale_check_per_fold_and_guards_its_recipe(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config, PolarSpec
    from sonoshift.downstream.segmenter import SegmenterTrainConfig, load_segmenter
    from sonoshift.judges.ga.estimator import load_ga_estimator
    from sonoshift.judges.ga.hc18_cv import cross_validate

    small = dict(data_dir=str(fake_hc18), model=ModelConfig(channels=(4, 8), strides=(2,)))
    seg = Hc18Config(image_size=32, train=SegmenterTrainConfig(steps=40, batch_size=4, lr=5e-3), **small)
    check = Hc18Config(image_size=16, head_polar=True, polar=PolarSpec(angles=16, radii=16, s_min=0.45, s_max=1.9),
                       train=SegmenterTrainConfig(steps=2, batch_size=4), **dict(small, data_dir="elsewhere"))
    out = tmp_path / "cv"
    s = cross_validate([seg], out, folds=2, progress=False, scale_check_config=check)
    for k in range(2):
        fdir = out / f"fold_{k}"
        est = load_ga_estimator(fdir / "estimator")
        assert est.scale_check is not None and est.scale_check.grid.s_min == 0.45
        wide_net = load_segmenter(fdir / "scale_check_0")
        assert wide_net.info["val_files"] == load_segmenter(fdir / "segmenter_0").info["val_files"]  # same fold
    without = pd.read_csv(out / "per_image_without_scale_check.csv")
    assert len(without) == s["images"] and s["without_scale_check_hc_abs_err_mm_mean"] == pytest.approx(
        without["hc_abs_err_mm"].mean())
    with pytest.raises(SonoshiftError, match="scale check on.*scale check off"):
        cross_validate([seg], out, folds=2, progress=False)
