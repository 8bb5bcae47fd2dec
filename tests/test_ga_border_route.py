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


def _tiny(path, size, seed=0):
    cfg = {"val_fraction": 0.25, "split_seed": seed, "model": {"channels": [4, 8], "strides": [2]}}
    net = build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2)
    save_segmenter(Segmenter(net, ("background", "head"), size, config=cfg), path)


def test_build_stores_the_border_estimator_and_refuses_another_split(fake_hc18, tmp_path):
    from sonoshift.judges.ga.hc18_report import build_estimator
    from sonoshift.judges.ga.onnx_net import OrtNet, with_runtime

    for name, size, seed in (("a", 32, 0), ("b", 24, 0), ("c", 24, 1)):
        _tiny(tmp_path / name, size, seed)
    build_estimator([tmp_path / "b"], fake_hc18, tmp_path / "cut_est")
    build_estimator([tmp_path / "c"], fake_hc18, tmp_path / "other_split")
    with pytest.raises(SonoshiftError, match="other HC18 images"):
        build_estimator([tmp_path / "a"], fake_hc18, tmp_path / "bad", border=tmp_path / "other_split")
    assert not (tmp_path / "bad").exists()
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "a"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--border", str(tmp_path / "cut_est"),
                                 "--border-threshold", "0.05"])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.border is not None and est.border_threshold == 0.05
    assert est.segmenter.image_size == 32 and est.border.segmenter.image_size == 24
    assert (tmp_path / "est" / "border" / "model.safetensors").is_file()
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    fast = with_runtime(est, "onnx", threads=1)
    assert isinstance(fast.border.segmenter.model, OrtNet)
    frames = [np.asarray(head_image(60, 80, 20.0, 14.0))[:, 30:]]
    np.testing.assert_allclose(measure(fast, frames, [0.2])["hc_mm"], measure(est, frames, [0.2])["hc_mm"],
                               rtol=1e-4, equal_nan=True)


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
        assert est.border is not None and est.border_threshold == 0.2
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


def test_cv_cli_refuses_border_settings_without_border_configs(tmp_path):
    r = CliRunner().invoke(app, ["ga", "cv-hc18", "-c", "configs/cpu/hc18_head_ga.yaml", "-o", str(tmp_path / "cv"),
                                 "--border-set", "cut_heads=0.3"])
    assert r.exit_code != 0 and "--border-set needs at least one --border-config" in str(r.exception)
    assert not (tmp_path / "cv").exists()
