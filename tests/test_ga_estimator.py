"""GA estimator: measurement from a known head map, build on an HC18-like folder, CLI predict and its errors."""

from __future__ import annotations

import math

import cv2

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from sonoshift.biometry.intergrowth import ga_weeks_from_hc
from sonoshift.cli.main import app
from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.downstream.ellipse import EllipseFit
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc as hadlock_ga_from_hc
from sonoshift.judges.ga.estimator import GaEstimator, load_ga_estimator, measure, measure_files

from hc18_data import fake_hc18, head_image  # noqa: F401 (fixture)
from prep_synth import write_dicom


class BrightIsHead(nn.Module):
    """Logits (background, head) = (0, k x): a pixel brighter than mid-grey is head."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), self.k * x], 1)


def test_measure_gives_hc_and_both_gas_in_mm():
    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=0.0, tta=True)
    img = head_image(270, 400, 150.0, 110.0, 15.0)
    df = measure(est, [img, np.full((100, 100), 30, np.uint8)], [0.5, 0.5])
    r = df.iloc[0]
    expected_hc = ellipse_perimeter(150, 110) * 0.5
    assert r["hc_mm"] == pytest.approx(expected_hc, rel=0.01)
    assert r["ga_hadlock_weeks"] == pytest.approx(hadlock_ga_from_hc(r["hc_mm"]))
    assert r["ga_intergrowth_weeks"] == pytest.approx(ga_weeks_from_hc(r["hc_mm"]))
    assert df.iloc[1]["status"] == "no head found" and math.isnan(df.iloc[1]["hc_mm"])


def test_an_amodal_first_stage_sees_frames_on_its_canvas(tmp_path):
    # the same brightness network, once marked amodal on a canvas of 0.25 each side: the head is found where it is
    config = {"amodal": True, "canvas_pad": 0.25}
    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 96, config=config), offset_px=0.0, tta=False)
    assert est.amodal and est.canvas_pad == 0.25
    img = head_image(270, 400, 150.0, 110.0, 15.0)
    df = measure(est, [img], [0.5])
    assert df.iloc[0]["hc_mm"] == pytest.approx(ellipse_perimeter(150, 110) * 0.5, rel=0.01)
    assert df.iloc[0]["border_fraction"] == 0.0
    Image.fromarray(img).save(tmp_path / "a.png")
    streamed = measure_files(est, [tmp_path / "a.png"], [0.5], names=["frame 0"])
    pd.testing.assert_frame_equal(streamed, df)


def test_a_cine_loop_is_measured_frame_by_frame(tmp_path):
    # a DICOM cine loop of three heads, read frame by frame in batches of two (the last DICOM is decoded once and
    # shared by both lanes): each row is the analytic perimeter of its own frame's ellipse
    from sonoshift.data.frame_inputs import list_frames

    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=0.0, tta=False)
    axes = [(150.0, 110.0), (120.0, 90.0), (90.0, 80.0)]
    loop = np.stack([head_image(270, 400, a, b, 10.0 * k) for k, (a, b) in enumerate(axes)])
    write_dicom(tmp_path / "loop.dcm", loop, "p")
    refs = list_frames([tmp_path / "loop.dcm"])
    for lanes in (1, 2):
        df = measure_files(est, refs, [0.5] * 3, batch_size=2, lanes=lanes)
        assert df["name"].tolist() == [f"{tmp_path / 'loop.dcm'}#{k}" for k in range(3)]
        want = [ellipse_perimeter(a, b) * 0.5 for a, b in axes]
        assert df["hc_mm"].to_numpy() == pytest.approx(want, rel=0.01)


class AlwaysHead(nn.Module):
    """A network that draws the same head (a centred ellipse) whatever it is shown, a blank frame too."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(5.0))

    def forward(self, x):
        s = x.shape[-1]
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        inside = (((xx - s / 2) / (0.3 * s)) ** 2 + ((yy - s / 2) / (0.2 * s)) ** 2 <= 1).float()
        head = (2 * inside - 1) * self.k + 0 * x
        return torch.cat([torch.zeros_like(x), head], 1)


def test_a_frame_without_echo_has_no_head(tmp_path):
    est = GaEstimator(Segmenter(AlwaysHead(), ("background", "head"), 64), offset_px=0.0, tta=False)
    black, faint, scan = (np.zeros((120, 160), np.uint8), np.full((120, 160), 8, np.uint8),
                          np.full((120, 160), 60, np.uint8))
    df = measure(est, [black, faint, scan], [0.5] * 3)
    # the network's "head" fills the frame: measured on the frame with echoes, not on the two without
    assert df["status"].tolist() == ["no head found", "no head found", "ok"]
    assert math.isnan(df["hc_mm"][0]) and df["hc_mm"][2] > 0
    for k, f in enumerate((black, faint, scan)):
        Image.fromarray(f).save(tmp_path / f"{k}.png")
    streamed = measure_files(est, [tmp_path / f"{k}.png" for k in range(3)], [0.5] * 3, names=["0", "1", "2"])
    assert streamed["status"].tolist() == df["status"].tolist()
    # a few bright pixels (a burned-in label) are not an echo: under 1 % of the model input
    label = black.copy()
    label[5:8, 5:20] = 255
    assert measure(est, [label], [0.5])["status"][0] == "no head found"


def test_missing_pixel_size_is_a_clear_error():
    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64))
    with pytest.raises(SonoshiftError, match="img.png has no pixel size"):
        measure(est, [head_image(100, 100, 30, 20)], [None], names=["img.png"])


@pytest.mark.slow
def test_build_train_and_predict_cli(fake_hc18, tmp_path):
    runner = CliRunner()
    out = tmp_path / "ga"
    r = runner.invoke(app, ["ga", "train-hc18", "-o", str(out), "--data-root", str(fake_hc18.parent),
                            "--set", "image_size=32", "--set", "model.channels=[4, 8]", "--set", "model.strides=[2]",
                            "--set", "train.steps=60", "--set", "val_fraction=0.25"])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(out)
    # OpenCV fills the pixels whose centres lie inside the ellipse, so the mask edge is ~0.5 px outside it;
    # the references are 1 px further in: the calibrated offset is about -1.5 px
    assert est.offset_px == pytest.approx(-1.5, abs=0.2)
    imgs = fake_hc18 / "training_set"
    r = runner.invoke(app, ["ga", "predict", str(out), str(imgs / "000_HC.png"), "-o", str(tmp_path / "p.csv")])
    assert r.exit_code != 0 and "no pixel size" in str(r.exception)
    r = runner.invoke(app, ["ga", "predict", str(out), str(imgs / "000_HC.png"), "-o", str(tmp_path / "p.csv"),
                            "--pixel-size", "0.2"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "p.csv")
    assert list(df["pixel_size_mm"]) == [0.2]
    # the same frame as a DICOM that states its pixel size (ultrasound region calibration, 0.02 cm per pixel)
    from pydicom.dataset import Dataset

    frame = np.asarray(Image.open(imgs / "000_HC.png").convert("L"))
    cal = Dataset()
    cal.RegionSpatialFormat, cal.RegionDataType = 1, 1
    cal.RegionLocationMinX0, cal.RegionLocationMinY0 = 0, 0
    cal.RegionLocationMaxX1, cal.RegionLocationMaxY1 = frame.shape[1] - 1, frame.shape[0] - 1
    cal.PhysicalUnitsXDirection = cal.PhysicalUnitsYDirection = 3
    cal.PhysicalDeltaX = cal.PhysicalDeltaY = 0.02
    write_dicom(tmp_path / "000_HC.dcm", frame[None], "p", SequenceOfUltrasoundRegions=[cal])
    r = runner.invoke(app, ["ga", "predict", str(out), str(tmp_path / "000_HC.dcm"), "-o", str(tmp_path / "d.csv")])
    assert r.exit_code == 0, r.output
    d = pd.read_csv(tmp_path / "d.csv")
    assert d["pixel_size_mm"].tolist() == pytest.approx([0.2]) and d["pixel_size_source"].tolist() == ["dicom"]
    assert d["hc_mm"].to_numpy() == pytest.approx(df["hc_mm"].to_numpy(), rel=1e-6)
    assert df["pixel_size_source"].tolist() == ["option"] and d["frame"].isna().all()
    r = runner.invoke(app, ["ga", "predict", str(out), str(imgs / "000_HC.png"), "-o", str(tmp_path / "o.csv"),
                            "--pixel-size", "0.2", "--runtime", "onnx"])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "o.csv")["hc_mm"].to_numpy() == pytest.approx(df["hc_mm"].to_numpy(), abs=1e-3)
    r = runner.invoke(app, ["ga", "predict", str(out), str(imgs / "000_HC.png"), "-o", str(tmp_path / "l.csv"),
                            "--pixel-size", "0.2", "--lanes", "0"])
    assert r.exit_code != 0 and "lanes must be at least 1" in str(r.exception) and not (tmp_path / "l.csv").exists()


def test_regressor_trains_saves_and_scores(fake_hc18, tmp_path):
    from sonoshift.judges.ga.regressor import (
        RegressorConfig,
        load_regressor,
        predict_ga,
        score,
        train_regressor,
    )
    from sonoshift.judges.plane.net import NetConfig

    cfg = RegressorConfig(data_dir=str(fake_hc18), image_size=32, net=NetConfig(stem=4, widths=(8,)), steps=5,
                          val_fraction=0.25)
    s = train_regressor(cfg, tmp_path / "r", progress=False)
    assert s["images"] == 3 and 0.0 <= s["valid_prediction_rate"] <= 1.0
    model, size = load_regressor(tmp_path / "r")
    val = pd.read_csv(tmp_path / "r" / "validation.csv")
    assert size == 32 and len(val) == 3
    # scoring by hand: a prediction equal to the reference GA has zero error and is valid; 8 weeks off is not
    hc = np.array([175.0, 175.0])
    ga = hadlock_ga_from_hc(hc)
    t = score(np.array([ga[0], ga[1] + 8.0]), hc)
    assert t["ga_err_days"].tolist() == pytest.approx([0.0, 56.0])
    assert t["valid"].tolist() == [True, False]
    assert predict_ga(model, torch.zeros(2, 1, 32, 32)).shape == (2,)


def test_a_blob_smaller_than_the_offset_is_no_head():
    # an ellipse whose semi-minor axis (about 1 px) is shorter than the calibrated offset (-3 px) has no perimeter:
    # the row says no head found, and the offset calibration skips such a fit instead of failing
    from sonoshift.judges.ga.head_fit import HeadFit, offset_for_fits

    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=-3.0, tta=False)
    img = np.full((64, 64), 30, np.uint8)
    cv2.ellipse(img, ((32.0, 32.0), (30.0, 3.0), 0.0), 220, -1)
    r = measure(est, [img], [0.5]).iloc[0]
    assert r["status"] == "no head found" and not r["head_found"] and math.isnan(r["hc_mm"])
    assert math.isnan(r["ga_hadlock_weeks"]) and math.isnan(r["cx"])
    thin, round_ = HeadFit(EllipseFit(10, 10, 8.0, 0.5, 0)), HeadFit(EllipseFit(10, 10, 5.0, 5.0, 0))
    assert math.isnan(thin.hc_px(-1.0)) and thin.hc_px(0.0) > 0
    # the round fit alone sets the offset: 2 pi (5 + d) = 2 pi 6 -> d = 1; the thin one asks for b + d < 0
    assert offset_for_fits([thin, round_], [2 * math.pi * 0.1, 2 * math.pi * 6]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("batch_size,lanes", [(2, 1), (1, 2), (2, 3), (None, 1), (None, 2)])
def test_measure_files_streams_batches_in_order(tmp_path, batch_size, lanes):
    # more files than one batch, sizes and pixel sizes differing per file, one without a head: every row must be
    # the analytic perimeter of its own drawn ellipse, in the order given; streamed or in lanes (threads each
    # measuring whole batches, more batches than the lanes hold at once)
    from sonoshift.judges.ga.estimator import measure_files

    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=0.0, tta=False)
    specs = [(270, 400, 150.0, 110.0, 15.0), (200, 200, 80.0, 60.0, 70.0), None, (300, 260, 100.0, 90.0, 0.0),
             (240, 320, 120.0, 70.0, 120.0)]
    paths, px, expected = [], [], []
    for i, spec in enumerate(specs):
        img = np.full((120, 150), 30, np.uint8) if spec is None else head_image(*spec)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
        px.append(0.1 * (i + 1))
        expected.append(math.nan if spec is None else ellipse_perimeter(spec[2], spec[3]) * px[-1])
    df = measure_files(est, paths, px, batch_size=batch_size, workers=2, lanes=lanes)
    assert list(df["name"]) == [str(p) for p in paths]
    assert df["head_found"].tolist() == [True, True, False, True, True]
    got = df["hc_mm"].to_numpy()
    assert np.isnan(got[2])
    keep = [0, 1, 3, 4]
    assert got[keep] == pytest.approx(np.array(expected)[keep], rel=0.01)
    with pytest.raises(SonoshiftError, match="lanes must be at least 1"):
        measure_files(est, paths, px, lanes=0)
    with pytest.raises(SonoshiftError, match="batch size must be at least 1"):
        measure_files(est, paths, px, batch_size=0)


def test_worst_cases_png_draws_reference_and_estimate(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import load_hc18_table
    from sonoshift.judges.ga.hc18_figure import worst_cases_png

    rows = load_hc18_table(fake_hc18).head(3)
    table = pd.DataFrame({"name": rows["filename"], "head_found": [True, False, True],
                          "hc_abs_err_mm": [1.0, math.nan, 3.0], "hc_mm": [10.0, math.nan, 12.0],
                          "hc_true_mm": [9.0, 9.0, 9.0], "cx": [48.0, math.nan, 48.0], "cy": [40.0, math.nan, 40.0],
                          "a_px": [20.0, math.nan, 25.0], "b_px": [15.0, math.nan, 18.0], "angle": [0.0, math.nan, 0.0]})
    out = worst_cases_png(table, rows, tmp_path / "w.png", n=3, width=200)
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape == (2 * round(80 * 200 / 96), 400, 3)  # 3 panels -> 2 lines of 2, 200 px wide each
    red = (img[..., 0] > 180) & (img[..., 1] < 90) & (img[..., 2] < 90)
    green = (img[..., 1] > 180) & (img[..., 0] < 90) & (img[..., 2] < 90)
    assert red.sum() > 50 and green.sum() > 50


class DarkIsHead(BrightIsHead):
    """The opposite of BrightIsHead: averaged with it, every pixel is 50/50 (no head anywhere)."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), -self.k * x], 1)


def test_ensemble_averages_member_maps_across_sizes():
    img = head_image(270, 400, 150.0, 110.0, 15.0)
    a = Segmenter(BrightIsHead(), ("background", "head"), 64)
    b = Segmenter(BrightIsHead(), ("background", "head"), 48)
    ens = GaEstimator(a, 0.0, True, (b,))
    assert ens.input_sizes == (64, 48)
    df = measure(ens, [img], [0.5])
    assert df.iloc[0]["hc_mm"] == pytest.approx(ellipse_perimeter(150, 110) * 0.5, rel=0.01)
    from sonoshift.judges.ga.estimator import head_probabilities

    # opposite members on a bright frame: each alone is sure (~1 and ~0), their mean is exactly undecided
    bright = np.full((270, 400), 200, np.uint8)
    dark = Segmenter(DarkIsHead(), ("background", "head"), 48)
    assert head_probabilities(GaEstimator(a, 0.0, False), [bright]).min() > 0.99
    p = head_probabilities(GaEstimator(a, 0.0, False, (dark,)), [bright])
    assert p.shape == (1, 64, 64) and np.allclose(p, 0.5, atol=1e-4)


def test_build_ensemble_saves_members_and_refuses_other_splits(fake_hc18, tmp_path):
    from sonoshift.downstream.segmenter import save_segmenter
    from sonoshift.judges.ga.hc18_report import build_estimator

    from sonoshift.downstream.segmenter import ModelConfig, build_unet

    tiny = ModelConfig(channels=(4, 8), strides=(2,))
    cfg = {"val_fraction": 0.25, "split_seed": 0, "model": {"channels": [4, 8], "strides": [2]}}
    for name, size, seed in (("a", 32, 0), ("b", 24, 0), ("c", 24, 1)):
        seg = Segmenter(build_unet(tiny, 2), ("background", "head"), size, config={**cfg, "split_seed": seed})
        save_segmenter(seg, tmp_path / name)
    with pytest.raises(SonoshiftError, match="other HC18 images"):
        build_estimator([tmp_path / "a", tmp_path / "c"], fake_hc18, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    build_estimator([tmp_path / "a", tmp_path / "b"], fake_hc18, tmp_path / "ens")
    est = load_ga_estimator(tmp_path / "ens")
    assert [s.image_size for s in est.segmenters] == [32, 24]
    assert len(pd.read_csv(tmp_path / "ens" / "hc18_validation.csv")) == 3


def test_folds_partition_subjects_and_bad_fold_is_refused():
    from sonoshift.config import ConfigValueError
    from sonoshift.downstream.hc18 import Hc18Config, split_subjects

    subjects = pd.Series([f"{i // 2:03d}" for i in range(23)])  # 12 subjects, two images each (one has one)
    masks = [split_subjects(subjects, 0.2, 3, folds=5, fold=k) for k in range(5)]
    assert (np.sum(masks, 0) == 1).all()  # every image held out exactly once
    for m in masks:  # a subject's images stay together
        assert not set(subjects[m]) & set(subjects[~m])
        assert 2 <= subjects[m].nunique() <= 3  # 12 subjects in 5 near-equal groups
    with pytest.raises(ConfigValueError, match="fold"):
        Hc18Config(folds=5, fold=5)
    with pytest.raises(ConfigValueError, match="folds"):
        Hc18Config(folds=1)


@pytest.mark.slow
def test_cross_validation_measures_every_image_once_and_resumes(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config
    from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig
    from sonoshift.judges.ga.hc18_cv import cross_validate

    cfg = Hc18Config(data_dir=str(fake_hc18), image_size=32, model=ModelConfig(channels=(4, 8), strides=(2,)),
                     train=SegmenterTrainConfig(steps=40, batch_size=4))
    s = cross_validate([cfg, cfg], tmp_path / "cv", folds=3, progress=False)
    table = pd.read_csv(tmp_path / "cv" / "per_image.csv")
    assert sorted(table["name"]) == sorted(f"{i:03d}_HC.png" for i in range(12))  # each image once
    assert s["images"] == 12 and len(s["fold_hc_abs_err_mm_mean"]) == 3
    for k in range(3):  # the fold's estimator never trained on its held-out images
        held = set(table.loc[table["fold"] == k, "name"])
        seg = load_ga_estimator(tmp_path / "cv" / f"fold_{k}" / "estimator").segmenter
        assert set(seg.info["val_files"]) == held and seg.info["train_images"] == 12 - len(held)
    assert (tmp_path / "cv" / "worst_cases.png").is_file()
    # a rerun reuses the finished folds (no retraining: the member weights stay the same files)
    before = (tmp_path / "cv" / "fold_0" / "segmenter_0" / "model.safetensors").stat().st_mtime_ns
    cross_validate([cfg, cfg], tmp_path / "cv", folds=3, progress=False)
    assert (tmp_path / "cv" / "fold_0" / "segmenter_0" / "model.safetensors").stat().st_mtime_ns == before


def test_onnx_runtime_gives_the_torch_head_maps():
    from sonoshift.downstream.segmenter import ModelConfig, build_unet
    from sonoshift.judges.ga.estimator import head_probabilities
    from sonoshift.judges.ga.onnx_net import with_runtime

    torch.manual_seed(0)
    segs = [Segmenter(build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2).eval(), ("background", "head"), s)
            for s in (32, 24)]
    est = GaEstimator(segs[0], 0.0, True, (segs[1],))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40 + 3 * i, 50), dtype=np.uint8) for i in range(3)]
    ref = head_probabilities(est, frames, batch_size=2)
    got = head_probabilities(with_runtime(est, "onnx", threads=1), frames, batch_size=2)
    assert got.shape == ref.shape == (3, 32, 32)
    assert np.abs(got - ref).max() < 1e-4 and ref.std() > 1e-3  # the maps are not trivially flat
    assert with_runtime(est, "torch") is est
    with pytest.raises(SonoshiftError, match="unknown runtime"):
        with_runtime(est, "tensorrt")
    # the estimator's ORT threads sleep between calls (the decode threads need the cores); ORT's default spins
    key = "session.intra_op.allow_spinning"
    quiet = with_runtime(est, "onnx", threads=1).segmenter.model.session.get_session_options()
    busy = with_runtime(est, "onnx", threads=1, spinning=True).segmenter.model.session.get_session_options()
    assert quiet.get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError):  # no entry: ORT's default (spinning)
        busy.get_session_config_entry(key)
    assert np.abs(head_probabilities(with_runtime(est, "onnx", threads=1, spinning=True), frames, 2) - ref).max() < 1e-4
