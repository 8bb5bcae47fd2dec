"""The tie-breaker (judges/ga/tie_breaker.py): the median rule in hand cases; an estimator whose three first stages
disagree on drawn heads (a sac closed with its skull, an inner edge of a whole head), with and without a polar
refiner; its storage by `ga build --tie-breaker`, and the cross-validation that trains it per fold."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.cli.main import app
from sonoshift.downstream.segmenter import ModelConfig, Segmenter, load_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import load_ga_estimator, measure, measure_files
from sonoshift.judges.ga.head_fit import EllipseFit, HeadFit
from sonoshift.judges.ga.tie_breaker import median_of_three
from test_ga_border_route import _tiny, onnx_alike
from test_ga_second_opinion import SAC, SKULL, FixedBlob, _estimators, _frame, _other_weights, predict_sac
from test_ga_polar import drawn
from hc18_data import fake_hc18  # noqa: F401 (fixture)

SKULL_HC, SAC_HC = ellipse_perimeter(*SKULL[2:4]), ellipse_perimeter(*SAC[2:4])


class NoHead(torch.nn.Module):
    """A first stage that finds no head anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return torch.cat([self.k * torch.ones_like(x), torch.zeros_like(x)], 1)


def circle(r: float, border: float = 0.0) -> HeadFit:
    return HeadFit(EllipseFit(cx=50.0, cy=40.0, a=r, b=r, angle=0.0), border)


def test_median_of_three_against_hand_values():
    main = circle(20.0, border=0.03)
    # HCs 2 pi r: the median radius wins; a fit taken from another start keeps the main border share and says so
    got = median_of_three(main, circle(17.0, border=0.4), circle(18.0), offset_px=0.0)
    assert (got.ellipse.a, got.border_fraction, got.second_opinion) == (18.0, 0.03, True)
    assert median_of_three(main, circle(25.0), circle(19.0), 0.0) is main  # the main one is the median
    assert median_of_three(main, circle(30.0), circle(26.0), 0.0).ellipse.a == 26.0  # one too large is outvoted too
    assert median_of_three(main, circle(20.0), circle(10.0), 0.0) is main  # ties go to the main measurement
    assert median_of_three(main, circle(15.0), HeadFit(None), 0.0) is main  # no median of two
    # the offset grows every semi-axis before the HCs are compared: radii 20 / 3 / 1 grown by -2 -> 18 / 1 / nothing
    assert median_of_three(main, circle(3.0), circle(1.0), -2.0) is main


def test_the_median_outvotes_the_one_first_stage_that_fails(tmp_path):
    plain, skull = _estimators()  # plain closes the skull with its faint sac, skull finds the skull
    frame = _frame()
    sac_closed = measure(plain, [frame], [1.0])["hc_mm"][0]
    assert sac_closed == pytest.approx(SAC_HC, rel=0.03)
    # two of three find the skull: the skull is measured, from the second start
    tie = dataclasses.replace(plain, second=skull, third=skull)
    got = measure(tie, [frame], [1.0])
    assert got["hc_mm"][0] == pytest.approx(SKULL_HC, rel=0.03) and got["second_opinion"].tolist() == [True]
    # the main one finds it and one other fails: the main measurement stands
    right = dataclasses.replace(plain, segmenter=skull, second=plain.segmenter, third=skull)
    kept = measure(right, [frame], [1.0])
    assert kept["hc_mm"][0] == pytest.approx(got["hc_mm"][0], rel=1e-6)
    assert kept["second_opinion"].tolist() == [False]
    # two that fail alike are not outvoted (the rule's limit), and a tie-breaker that finds nothing changes nothing
    for third in (plain.segmenter, Segmenter(NoHead(), ("background", "head"), 128)):
        same = measure(dataclasses.replace(tie, third=third), [frame], [1.0])
        assert same["hc_mm"][0] == pytest.approx(sac_closed, rel=1e-6) and not same["second_opinion"][0]
    # without a second opinion the tie-breaker has nothing to break: the plain measurement
    alone = dataclasses.replace(plain, third=skull)
    assert measure(alone, [frame], [1.0])["hc_mm"][0] == pytest.approx(sac_closed, rel=1e-6)
    # files go through the same stages as frames, in one lane and in two
    Image.fromarray(frame).save(tmp_path / "sac.png")
    for lanes in (1, 2):
        on_files = measure_files(tie, [tmp_path / "sac.png"], [1.0], lanes=lanes)["hc_mm"][0]
        assert on_files == pytest.approx(got["hc_mm"][0], rel=1e-6)


def test_with_a_polar_refiner_a_main_start_on_an_inner_edge_is_outvoted():
    from test_ga_polar import refiner

    plain, _ = _estimators()
    polar = refiner(1.0, iterations=1, tta=False)
    inner_edge = (SAC[0], SAC[1], SAC[2] * 0.5, SAC[3] * 0.5, SAC[4])
    # a bright head with an inner edge (a polar refiner finds an outline there, not only noise)
    head = drawn(SAC, inside=150, outside=20) + drawn(inner_edge, inside=90, outside=0)
    inner = Segmenter(FixedBlob(inner_edge), ("background", "head"), 128)
    right = dataclasses.replace(plain, polar=(polar,))
    truth = measure(right, [head], [1.0])["hc_mm"][0]
    assert truth == pytest.approx(SAC_HC, rel=0.03)
    # the main first stage settles on an inner edge; the second opinion's rule (smaller only) cannot mend that
    wrong_main = dataclasses.replace(right, segmenter=inner)
    small = measure(wrong_main, [head], [1.0])["hc_mm"][0]
    assert small < 0.8 * truth
    assert measure(dataclasses.replace(wrong_main, second=plain.segmenter), [head], [1.0])["hc_mm"][0] == \
        pytest.approx(small, rel=1e-6)
    # with a tie-breaker that finds the whole head too, the two whole-head measurements outvote it
    tie = dataclasses.replace(wrong_main, second=plain.segmenter, third=plain.segmenter)
    got = measure(tie, [head], [1.0])
    assert got["hc_mm"][0] == pytest.approx(truth, rel=1e-6) and got["second_opinion"].tolist() == [True]
    # and a second network on the inner edge is outvoted when the main and the tie-breaker find the head
    outvoted = dataclasses.replace(right, second=inner, third=plain.segmenter)
    assert measure(outvoted, [head], [1.0])["hc_mm"][0] == pytest.approx(truth, rel=1e-6)


def test_build_stores_the_tie_breaker_and_refuses_what_cannot_be_one(fake_hc18, tmp_path):
    from sonoshift.judges.ga.hc18_report import build_estimator
    from sonoshift.judges.ga.onnx_net import OrtNet
    from test_ga_estimator import head_image

    _tiny(tmp_path / "seg", 32)
    _other_weights(tmp_path / "seg", tmp_path / "second")
    _other_weights(tmp_path / "seg", tmp_path / "third", seed=4321)
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "seg"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--second-opinion", str(tmp_path / "second"),
                                 "--tie-breaker", str(tmp_path / "third")])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.second is not None and est.third is not None
    assert (tmp_path / "est" / "tie_breaker" / "model.safetensors").is_file()
    stored = dict(est.third.model.state_dict())
    given = dict(load_segmenter(tmp_path / "third").model.state_dict())
    assert all(torch.equal(stored[k], given[k]) for k in given)
    fast = onnx_alike(est, [np.asarray(head_image(60, 80, 20.0, 14.0))])
    assert isinstance(fast.third.model, OrtNet)
    with pytest.raises(SonoshiftError, match="give --second-opinion too"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", tie_breaker=tmp_path / "third")
    with pytest.raises(SonoshiftError, match="second opinion's own weights"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", second_opinion=tmp_path / "second",
                        tie_breaker=tmp_path / "second")
    with pytest.raises(SonoshiftError, match="tie-breaker .* first stage's own weights"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", second_opinion=tmp_path / "second",
                        tie_breaker=tmp_path / "seg")
    assert not (tmp_path / "bad").exists()


def test_cross_validation_trains_the_tie_breaker_per_fold_and_guards_its_recipe(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config
    from sonoshift.downstream.segmenter import SegmenterTrainConfig
    from sonoshift.judges.ga.hc18_cv import cross_validate

    seg = Hc18Config(data_dir=str(fake_hc18), image_size=32, model=ModelConfig(channels=(4, 8), strides=(2,)),
                     train=SegmenterTrainConfig(steps=40, batch_size=4, lr=5e-3, seed=3))
    out = tmp_path / "cv"
    with pytest.raises(SonoshiftError, match="give --second-opinion too"):
        cross_validate([seg], out, folds=2, progress=False, tie_breaker=True)
    s = cross_validate([seg], out, folds=2, progress=False, second_opinion=True, tie_breaker=True)
    for k in range(2):
        fdir = out / f"fold_{k}"
        assert load_ga_estimator(fdir / "estimator").third is not None
        main, third = load_segmenter(fdir / "segmenter_0"), load_segmenter(fdir / "tie_breaker_0")
        assert third.info["val_files"] == main.info["val_files"]  # the same fold
        assert (main.config["train"]["seed"], third.config["train"]["seed"]) == (3, 5)  # after the second's 4
    without = pd.read_csv(out / "per_image_without_tie_breaker.csv")
    assert len(without) == s["images"] and s["without_tie_breaker_hc_abs_err_mm_mean"] == pytest.approx(
        without["hc_abs_err_mm"].mean())
    assert math.isfinite(s["hc_abs_err_mm_mean"])
    with pytest.raises(SonoshiftError, match="tie-breaker on.*tie-breaker off"):
        cross_validate([seg], out, folds=2, progress=False, second_opinion=True)


def test_ga_predict_says_which_rule_took_another_start(tmp_path, monkeypatch):
    plain, skull = _estimators()
    output, table = predict_sac(tmp_path, monkeypatch, dataclasses.replace(plain, second=skull, third=skull))
    assert table["second_opinion"].tolist() == [True]
    assert "the median of three first stages" in output
