"""Heads at the image border measured by a second estimator (``GaEstimator.border``): which heads go to it, its
ellipses in the outer estimator's offset convention, its storage by `ga build --border`, and ONNX Runtime."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.cli.main import app
from sonoshift.downstream.segmenter import ModelConfig, Segmenter, build_unet, save_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import GaEstimator, load_ga_estimator, measure
from test_ga_estimator import BrightIsHead, fake_hc18, head_image  # noqa: F401 (fixture)


def test_only_heads_at_the_border_go_to_the_border_estimator():
    seg = Segmenter(BrightIsHead(), ("background", "head"), 64)
    # the border estimator sees the same heads but calibrates its ellipse 5 px larger: where it measures, the HC is
    # that of the semi-axes grown by 5 px
    est = GaEstimator(seg, offset_px=0.0, tta=False, border=GaEstimator(seg, offset_px=5.0, tta=False))
    whole = head_image(270, 400, 120.0, 90.0, 10.0)
    cut = whole[:, 200 - 40 :]  # the head's left 80 px of 240 leave the image
    m = measure(est, [whole, cut], [1.0, 1.0])
    alone = measure(dataclasses.replace(est, border=None), [whole, cut], [1.0, 1.0])
    assert m["hc_mm"][0] == alone["hc_mm"][0]  # untouched head: the first estimator
    a, b = alone["a_px"][1], alone["b_px"][1]
    assert m["hc_mm"][1] == pytest.approx(ellipse_perimeter(a + 5, b + 5), rel=1e-6)
    assert m["border_fraction"][1] == alone["border_fraction"][1] > 0
    # a threshold above the cut head's border share keeps it with the first estimator
    high = dataclasses.replace(est, border_threshold=float(alone["border_fraction"][1]) + 0.01)
    assert measure(high, [cut], [1.0])["hc_mm"][0] == alone["hc_mm"][1]


def test_measured_rows_say_how_much_of_a_cut_head_was_extrapolated():
    import math

    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=0.0, tta=False)
    circle = head_image(270, 400, 60.0, 60.0)[:, 160:]  # centre 40 px right of the new left edge, radius 60
    m = measure(est, [circle, head_image(270, 400, 60.0, 60.0)], [1.0, 1.0])
    # the arc of a circle of radius 60 beyond a chord 40.5 px from its centre (the edge is half a pixel out)
    assert m["outside_fraction"][0] == pytest.approx(math.acos(40.5 / 60) / math.pi, abs=0.02)
    assert m["outside_fraction"][1] == 0.0


def _tiny(path, size, seed=0):
    cfg = {"val_fraction": 0.25, "split_seed": seed, "model": {"channels": [4, 8], "strides": [2]}}
    torch.manual_seed(size + seed)  # untrained weights, the same every run
    net = build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2)
    save_segmenter(Segmenter(net, ("background", "head"), size, config=cfg), path)


def onnx_alike(est, frames):
    """``est`` in ONNX Runtime (one thread), after checking that it measures ``frames`` as PyTorch does."""
    from sonoshift.judges.ga.onnx_net import with_runtime

    fast = with_runtime(est, "onnx", threads=1)
    np.testing.assert_allclose(measure(fast, frames, [0.2] * len(frames))["hc_mm"],
                               measure(est, frames, [0.2] * len(frames))["hc_mm"], rtol=1e-4, equal_nan=True)
    return fast


def test_build_stores_the_border_estimator_and_refuses_another_split(fake_hc18, tmp_path):
    from sonoshift.judges.ga.hc18_report import build_estimator
    from sonoshift.judges.ga.onnx_net import OrtNet

    for name, size, seed in (("a", 32, 0), ("b", 24, 0), ("c", 24, 1)):
        _tiny(tmp_path / name, size, seed)
    build_estimator([tmp_path / "b"], fake_hc18, tmp_path / "cut_est")
    build_estimator([tmp_path / "c"], fake_hc18, tmp_path / "other_split")
    with pytest.raises(SonoshiftError, match="other HC18 images"):
        build_estimator([tmp_path / "a"], fake_hc18, tmp_path / "bad", border=tmp_path / "other_split")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SonoshiftError, match="needs a border estimator"):
        build_estimator([tmp_path / "a"], fake_hc18, tmp_path / "bad", border_gap=0.2)
    assert not (tmp_path / "bad").exists()
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "a"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--border", str(tmp_path / "cut_est"),
                                 "--border-threshold", "0.05"])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.border is not None and est.border_threshold == 0.05
    assert est.border_gap == 0.2  # the default second look at heads near the border (sessions 30 and 32)
    assert load_ga_estimator(tmp_path / "cut_est").border_gap == 0.0  # nothing to send heads to
    assert est.segmenter.image_size == 32 and est.border.segmenter.image_size == 24
    assert (tmp_path / "est" / "border" / "model.safetensors").is_file()
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    fast = onnx_alike(est, [np.asarray(head_image(60, 80, 20.0, 14.0))[:, 30:]])
    assert isinstance(fast.border.segmenter.model, OrtNet)


def test_cross_validation_builds_each_folds_border_estimator_and_guards_its_recipe(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config, PolarSpec
    from sonoshift.downstream.segmenter import SegmenterTrainConfig, load_segmenter
    from sonoshift.judges.ga.hc18_cv import cross_validate

    small = dict(data_dir=str(fake_hc18), model=ModelConfig(channels=(4, 8), strides=(2,)))
    seg = Hc18Config(image_size=32, train=SegmenterTrainConfig(steps=40, batch_size=4, lr=5e-3), **small)
    pol = Hc18Config(image_size=16, head_polar=True, polar=PolarSpec(angles=16, radii=16),
                     train=SegmenterTrainConfig(steps=3, batch_size=4), **small)
    cut = dataclasses.replace(seg, cut_heads=1.0, cut_copies=2, data_dir="elsewhere")  # the data follow the recipe
    out = tmp_path / "cv"
    cross_validate([seg, pol], out, folds=2, progress=False, border_configs=[cut], border_threshold=0.2)
    for k in range(2):
        fdir = out / f"fold_{k}"
        est = load_ga_estimator(fdir / "estimator")
        assert est.border is not None and est.border_threshold == 0.2 and est.border_gap == 0.2
        member = load_segmenter(fdir / "border_segmenter_0")
        assert member.info["cut_copies"] == 2 * member.info["train_images"]  # every training head cut twice
        assert member.info["val_files"] == load_segmenter(fdir / "segmenter_0").info["val_files"]  # same fold
        # the border estimator takes the fold's own polar network for its last look
        mine = load_segmenter(fdir / "segmenter_1").model.state_dict()
        theirs = est.border.polar[0].segmenter.model.state_dict()
        assert all(torch.equal(mine[n], theirs[n]) for n in mine)
    stamp = (out / "fold_0" / "border_segmenter_0" / "segmenter.json").stat().st_mtime_ns
    cross_validate([seg, pol], out, folds=2, progress=False, border_configs=[cut], border_threshold=0.2)  # resumes
    assert (out / "fold_0" / "border_segmenter_0" / "segmenter.json").stat().st_mtime_ns == stamp
    with pytest.raises(SonoshiftError, match="cross-validated with 1 border member"):
        cross_validate([seg, pol], out, folds=2, progress=False)
    with pytest.raises(SonoshiftError, match="threshold 0.2"):
        cross_validate([seg, pol], out, folds=2, progress=False, border_configs=[cut], border_threshold=0.1)
    with pytest.raises(SonoshiftError, match="gap 0.2.*gap 0.0"):
        cross_validate([seg, pol], out, folds=2, progress=False, border_configs=[cut], border_threshold=0.2,
                       border_gap=0.0)


def test_cv_cli_refuses_border_settings_without_border_configs(tmp_path):
    r = CliRunner().invoke(app, ["ga", "cv-hc18", "-c", "configs/cpu/hc18_head_ga.yaml", "-o", str(tmp_path / "cv"),
                                 "--border-set", "cut_heads=0.3"])
    assert r.exit_code != 0 and "--border-set needs at least one --border-config" in str(r.exception)
    assert not (tmp_path / "cv").exists()


class SpreadHead(BrightIsHead):
    """BrightIsHead after a 9 x 9 max filter: its head map reaches 4 model pixels further than the bright head."""

    def forward(self, x):
        return super().forward(torch.nn.functional.max_pool2d(x, 9, stride=1, padding=4))


def test_ellipse_border_gap_against_hand_values():
    from sonoshift.judges.ga.border_cut import ellipse_border_gap

    # a circle of radius 10 at (50, 40) in a 100 x 200 image: 30 px from the top edge, the nearest
    assert ellipse_border_gap(50, 40, 10, 10, 0, (100, 200)) == pytest.approx(3.0)
    # a 20 x 10 ellipse turned upright reaches 20 px up and 10 px sideways
    assert ellipse_border_gap(50, 40, 20, 10, 90, (100, 200)) == pytest.approx(2.0)
    assert ellipse_border_gap(185, 40, 20, 10, 90, (100, 200)) == pytest.approx(0.4)  # 199 - 185 - 10 = 4 px right
    assert ellipse_border_gap(50, 5, 20, 10, 90, (100, 200)) == pytest.approx(-1.5)  # crosses the top edge


def test_ellipse_outside_against_the_circular_segment():
    import math

    from sonoshift.judges.ga.border_cut import ellipse_outside

    # a circle of radius 20 whose centre lies 10 px right of the left edge (x = -0.5): the arc beyond the chord is
    # 2 arccos(10 / 20) of the 2 pi around it, a third of the perimeter
    assert ellipse_outside(9.5, 50, 20, 20, 0, (100, 200)) == pytest.approx(math.acos(0.5) / math.pi, abs=2e-3)
    # an upright 30 x 10 ellipse centred on the bottom edge: half of it below, by symmetry
    assert ellipse_outside(100, 99.5, 30, 10, 90, (100, 200)) == pytest.approx(0.5, abs=2e-3)
    assert ellipse_outside(100, 50, 30, 10, 90, (100, 200)) == 0.0  # inside: nothing extrapolated


def test_second_look_sends_a_head_near_the_border_that_the_border_network_finds_at_it():
    import cv2

    def head_at(cx):
        img = np.full((270, 400), 30, np.uint8)
        cv2.ellipse(img, ((cx, 135.0), (220.0, 160.0), 0.0), 220, -1)
        return img

    near, far = head_at(150.0), head_at(200.0)  # 40 and 90 px (0.5 and 1.1 semi-minor axes) from the left edge
    main = Segmenter(BrightIsHead(), ("background", "head"), 64)
    border = GaEstimator(Segmenter(SpreadHead(), ("background", "head"), 64), offset_px=5.0, tta=False)
    est = GaEstimator(main, offset_px=0.0, tta=False, border=border, border_threshold=0.0)
    alone = measure(dataclasses.replace(est, border=None), [near, far], [1.0, 1.0])
    assert (alone["border_fraction"] == 0).all()  # the main first stage keeps both heads off the border
    assert measure(est, [near, far], [1.0, 1.0])["hc_mm"].tolist() == alone["hc_mm"].tolist()  # no second look
    looked = measure(dataclasses.replace(est, border_gap=0.6), [near, far], [1.0, 1.0])
    # the near head's spread map reaches the border: the border estimator measures it; the far one stays
    assert looked["hc_mm"][0] == pytest.approx(measure(border, [near], [1.0])["hc_mm"][0], rel=1e-6)
    assert looked["hc_mm"][0] != pytest.approx(alone["hc_mm"][0], rel=1e-3)
    assert looked["hc_mm"][1] == alone["hc_mm"][1]
    # a gap below the near head's 0.5 semi-minor axes does not look again
    assert measure(dataclasses.replace(est, border_gap=0.4), [near], [1.0])["hc_mm"][0] == alone["hc_mm"][0]


def test_amodal_networks_train_build_into_one_estimator_and_do_not_mix_with_others(fake_hc18, tmp_path):
    from sonoshift.config import load_config
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter
    from sonoshift.judges.ga.estimator import is_amodal
    from sonoshift.judges.ga.hc18_report import build_estimator

    base = [f"data_dir={fake_hc18}", "image_size=32", "model.channels=[4, 8]", "model.strides=[2]", "train.steps=3",
            "val_fraction=0.25", "cut_heads=1.0", "amodal=true", "canvas_pad=0.3"]
    train_hc18_segmenter(load_config(Hc18Config, None, base), tmp_path / "first", progress=False)
    train_hc18_segmenter(load_config(Hc18Config, None, [*base, "head_crops=2"]), tmp_path / "crop", progress=False)
    build_estimator([tmp_path / "first", tmp_path / "crop"], fake_hc18, tmp_path / "est")
    est = load_ga_estimator(tmp_path / "est")
    assert est.amodal and est.canvas_pad == 0.3 and is_amodal(est.refiners[0])
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    _tiny(tmp_path / "plain", 32)
    with pytest.raises(SonoshiftError, match="amodal"):
        build_estimator([tmp_path / "first", tmp_path / "plain"], fake_hc18, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_cv_refuses_a_border_gap_without_border_configs(tmp_path):
    r = CliRunner().invoke(app, ["ga", "cv-hc18", "-c", "configs/cpu/hc18_head_ga.yaml", "-o", str(tmp_path / "cv"),
                                 "--border-gap", "0.2"])
    assert r.exit_code != 0 and "a border gap needs border configs" in str(r.exception)
    assert not (tmp_path / "cv").exists()
