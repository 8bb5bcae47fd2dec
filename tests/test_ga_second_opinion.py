"""The second opinion (judges/ga/second_opinion.py): the rule in hand cases; an estimator whose first stage closes a
drawn skull together with its faint sac, and a second first stage that finds the skull; its storage by `ga build
--second-opinion`, ONNX Runtime, and the cross-validation that trains it per fold."""

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
from sonoshift.downstream.segmenter import ModelConfig, Segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import GaEstimator, load_ga_estimator, measure, measure_files
from sonoshift.judges.ga.head_fit import EllipseFit, HeadFit
from sonoshift.judges.ga.second_opinion import TAU, second_opinion, takes_second
from test_ga_border_route import _tiny, onnx_alike
from test_ga_estimator import BrightIsHead
from test_ga_polar import drawn
from hc18_data import fake_hc18  # noqa: F401 (fixture)

SKULL = (150.3, 118.7, 50.0, 38.0, 25.0)  # cx, cy, a, b, angle
SAC = (165.0, 125.0, 80.0, 61.0, 25.0)  # a faint ellipse 1.6 x around the skull, off its centre


class VeryBrightIsHead(BrightIsHead):
    """A pixel brighter than 200 grey levels is head (the skull drawn at 230, not the sac at 135)."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), self.k * (x - 200 / 127.5 + 1)], 1)


def fit(a: float, b: float, border: float = 0.0) -> HeadFit:
    return HeadFit(EllipseFit(cx=50.0, cy=40.0, a=a, b=b, angle=0.0), border)


def test_takes_second_against_hand_values():
    # log(100 / 85) = 0.163 and log(100 / 95) = 0.051 against tau 0.10; a larger second, or one missing, never
    got = takes_second([100, 100, 100, np.nan, 100, 100], [85, 95, 120, 50, np.nan, 0.0])
    assert got.tolist() == [True, False, False, False, False, False]
    assert TAU == 0.10
    assert takes_second([100], [95], tau=0.05).tolist() == [True]


def test_second_opinion_reads_the_offset_and_keeps_the_main_border_share():
    main, second = fit(20.0, 20.0, border=0.04), fit(17.5, 17.5, border=0.5)
    # the raw semi-axes differ by log(20 / 17.5) = 0.134; grown by an offset of 20 px only by log(40 / 37.5) = 0.065
    (got,), take = second_opinion([main], [second], offset_px=0.0)
    assert take.tolist() == [True]
    assert (got.ellipse, got.border_fraction) == (second.ellipse, 0.04)  # the border route reads the main one
    assert got.second_opinion and not main.second_opinion
    (kept,), take = second_opinion([main], [second], offset_px=20.0)
    assert take.tolist() == [False] and kept is main
    (none,), _ = second_opinion([HeadFit(None)], [second], 0.0)  # no head found stays no head found
    assert not none.found


def _estimators():
    plain = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 128), offset_px=0.0, tta=False)
    skull = Segmenter(VeryBrightIsHead(), ("background", "head"), 128)
    return plain, skull


def _frame():
    return np.maximum(drawn(SAC, inside=135, outside=120), drawn(SKULL, inside=230, outside=0))


def test_the_estimator_takes_the_second_opinion_where_it_finds_the_skull_inside_the_sac(tmp_path):
    plain, skull = _estimators()
    frame = _frame()
    sac_hc, skull_hc = ellipse_perimeter(*SAC[2:4]), ellipse_perimeter(*SKULL[2:4])
    assert measure(plain, [frame], [1.0])["hc_mm"][0] == pytest.approx(sac_hc, rel=0.03)
    second = dataclasses.replace(plain, second=skull)
    taken = measure(second, [frame], [1.0])
    got = taken["hc_mm"][0]
    assert got == pytest.approx(skull_hc, rel=0.03) and taken["second_opinion"].tolist() == [True]
    # a main first stage that finds the skull keeps it: the larger sac of a second opinion is never taken
    skull_first = dataclasses.replace(plain, segmenter=skull, second=plain.segmenter)
    kept = measure(skull_first, [frame], [1.0])
    assert kept["hc_mm"][0] == pytest.approx(got, rel=1e-6) and kept["second_opinion"].tolist() == [False]
    # a second opinion that agrees changes nothing
    same = dataclasses.replace(plain, second=plain.segmenter)
    assert measure(same, [frame], [1.0])["hc_mm"][0] == pytest.approx(sac_hc, rel=0.03)
    # files go through the same stages as frames
    Image.fromarray(frame).save(tmp_path / "sac.png")
    assert measure_files(second, [tmp_path / "sac.png"], [1.0])["hc_mm"][0] == pytest.approx(got, rel=1e-6)


def _other_weights(src, dst, seed: int = 1234):
    """The segmenter at ``src`` (same split and config) with other random weights (drawn with ``seed``), saved at
    ``dst``."""
    from sonoshift.downstream.segmenter import load_segmenter, save_segmenter

    seg = load_segmenter(src)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in seg.model.parameters():
            p.normal_(0.0, 0.1)
    save_segmenter(seg, dst)


def test_build_stores_the_second_opinion_and_refuses_what_cannot_be_one(fake_hc18, tmp_path):
    from sonoshift.judges.ga.hc18_report import build_estimator
    from sonoshift.judges.ga.onnx_net import OrtNet
    from test_ga_estimator import head_image
    from test_ga_scale_check import _wide_polar

    _tiny(tmp_path / "seg", 32)
    _other_weights(tmp_path / "seg", tmp_path / "other_seed")
    _tiny(tmp_path / "other_split", 32, seed=1)
    _wide_polar(tmp_path / "polar", fake_hc18)
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "seg"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--second-opinion",
                                 str(tmp_path / "other_seed")])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.second is not None and est.second_tau == TAU
    assert (tmp_path / "est" / "second_opinion" / "model.safetensors").is_file()
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    fast = onnx_alike(est, [np.asarray(head_image(60, 80, 20.0, 14.0))])
    assert isinstance(fast.second.model, OrtNet)
    with pytest.raises(SonoshiftError, match="not a whole-frame segmenter"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", second_opinion=tmp_path / "polar")
    with pytest.raises(SonoshiftError, match="other HC18 images"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", second_opinion=tmp_path / "other_split")
    with pytest.raises(SonoshiftError, match="first stage's own weights"):
        build_estimator([tmp_path / "seg"], fake_hc18, tmp_path / "bad", second_opinion=tmp_path / "seg")
    assert not (tmp_path / "bad").exists()


def test_cross_validation_trains_the_second_opinion_per_fold_and_guards_its_recipe(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config
    from sonoshift.downstream.segmenter import SegmenterTrainConfig, load_segmenter
    from sonoshift.judges.ga.hc18_cv import cross_validate

    seg = Hc18Config(data_dir=str(fake_hc18), image_size=32, model=ModelConfig(channels=(4, 8), strides=(2,)),
                     train=SegmenterTrainConfig(steps=40, batch_size=4, lr=5e-3, seed=3))
    out = tmp_path / "cv"
    s = cross_validate([seg], out, folds=2, progress=False, second_opinion=True)
    for k in range(2):
        fdir = out / f"fold_{k}"
        assert load_ga_estimator(fdir / "estimator").second is not None
        main, other = load_segmenter(fdir / "segmenter_0"), load_segmenter(fdir / "second_opinion_0")
        assert other.info["val_files"] == main.info["val_files"]  # the same fold
        assert (main.config["train"]["seed"], other.config["train"]["seed"]) == (3, 4)  # the next seed
        assert not all(torch.equal(p, q) for p, q in zip(main.model.parameters(), other.model.parameters()))
    without = pd.read_csv(out / "per_image_without_second_opinion.csv")
    assert len(without) == s["images"] and s["without_second_opinion_hc_abs_err_mm_mean"] == pytest.approx(
        without["hc_abs_err_mm"].mean())
    assert math.isfinite(s["hc_abs_err_mm_mean"])
    with pytest.raises(SonoshiftError, match="second opinion on.*second opinion off"):
        cross_validate([seg], out, folds=2, progress=False)


def test_first_gap_against_hand_values():
    from sonoshift.judges.ga.second_opinion import first_gap

    main = fit(20.0, 20.0)
    moved = HeadFit(EllipseFit(cx=53.0, cy=44.0, a=20.0, b=20.0, angle=0.0))  # centres 5 px apart
    assert first_gap(main, moved, 0.0) == pytest.approx(5 / 20)
    assert first_gap(main, moved, 5.0) == pytest.approx(5 / 25)  # over the semi-minor axis grown by the offset
    assert first_gap(main, fit(18.0, 18.0), 0.0) == pytest.approx(math.log(20 / 18))  # a circle: HC ratio 20 / 18
    assert first_gap(main, HeadFit(None), 0.0) == math.inf


def test_the_flag_survives_the_polar_refiner_and_ga_predict_notes_it(tmp_path, monkeypatch):
    from sonoshift.judges.ga.polar_refiner import polar_fits
    from test_ga_scale_check import wide

    frame = drawn(SKULL)
    flagged = dataclasses.replace(HeadFit(EllipseFit(*SKULL), 0.02), second_opinion=True)
    (moved,) = polar_fits(wide(), [frame], [flagged], 0.0)
    assert moved.second_opinion and moved.border_fraction == 0.02 and math.isfinite(moved.outline_confidence)
    # the CLI, given an estimator whose second opinion is taken on the drawn sac, says so in the CSV and on stderr
    plain, skull = _estimators()
    output, table = predict_sac(tmp_path, monkeypatch, dataclasses.replace(plain, second=skull))
    assert table["second_opinion"].tolist() == [True]
    assert "1 head(s) measured from the second opinion" in output


def predict_sac(tmp_path, monkeypatch, est) -> tuple[str, pd.DataFrame]:
    """`ga predict` with ``est`` on the drawn sac frame: (its output, its CSV)."""
    monkeypatch.setattr("sonoshift.cli.ga._load", lambda *a, **k: est)
    Image.fromarray(_frame()).save(tmp_path / "sac.png")
    r = CliRunner().invoke(app, ["ga", "predict", str(tmp_path), str(tmp_path / "sac.png"), "--pixel-size", "1.0",
                                 "-o", str(tmp_path / "hc.csv")])
    assert r.exit_code == 0, r.output
    return r.output, pd.read_csv(tmp_path / "hc.csv")


def test_more_confident_against_hand_values():
    from sonoshift.judges.ga.second_opinion import more_confident

    main = [HeadFit(None, 0.0, c) for c in (0.4, 0.6, math.nan, 0.5)]
    candidate = [HeadFit(None, 0.0, c) for c in (0.5, 0.5, 0.9, math.nan)]
    assert more_confident(main, candidate).tolist() == [True, False, False, False]


class FixedBlob(torch.nn.Module):
    """A first stage that finds the same small ellipse in every frame (an inner edge taken for the head)."""

    def __init__(self, ellipse, size: int = 128, shape=(240, 300)) -> None:
        super().__init__()
        import cv2

        mask = drawn(ellipse, shape=shape, inside=255, outside=0)
        small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        self.register_buffer("map", torch.from_numpy(small)[None, None])
        self.k = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        m = self.map.expand(x.shape[0], 1, -1, -1)
        return torch.cat([torch.zeros_like(m), self.k * (m - 0.5)], 1)


def test_with_a_polar_refiner_the_candidate_is_taken_only_where_its_outline_is_surer():
    import cv2

    from test_ga_polar import refiner

    plain, skull = _estimators()
    polar = refiner(1.0, iterations=1, tta=False)
    # a soft sac wall (blurred) around the sharp skull: from the skull the outline is surer, the skull is taken
    soft_sac = cv2.GaussianBlur(drawn(SAC, inside=135, outside=120), (0, 0), 4)
    frame = np.maximum(soft_sac, drawn(SKULL, inside=230, outside=0))
    guarded = dataclasses.replace(plain, polar=(polar,), second=skull)
    got = measure(guarded, [frame], [1.0])
    assert got["hc_mm"][0] == pytest.approx(ellipse_perimeter(*SKULL[2:4]), rel=0.03)
    assert got["second_opinion"].tolist() == [True]
    # a second network that takes an inner edge of a whole bright head: much smaller, but no outline there
    head = drawn(SAC, inside=230, outside=20)
    inner = (SAC[0], SAC[1], SAC[2] * 0.5, SAC[3] * 0.5, SAC[4])
    wrong = dataclasses.replace(guarded, second=Segmenter(FixedBlob(inner), ("background", "head"), 128))
    kept = measure(wrong, [head], [1.0])
    assert kept["hc_mm"][0] == pytest.approx(ellipse_perimeter(*SAC[2:4]), rel=0.03)
    assert kept["second_opinion"].tolist() == [False]
    # without the guard's polar refiner the same candidate would have been taken
    bare = dataclasses.replace(wrong, polar=())
    assert measure(bare, [head], [1.0])["hc_mm"][0] == pytest.approx(ellipse_perimeter(*inner[2:4]), rel=0.05)
