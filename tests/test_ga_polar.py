"""The polar refiner: its geometry against ellipses drawn by OpenCV, the column loss and decoding against hand
computations, the whole apply path with an edge-finding stand-in network, training and the estimator with it."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.config import ConfigValueError
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.errors import SonoshiftError
from hc18_data import fake_hc18  # noqa: F401 (fixture)
from sonoshift.judges.ga.polar import PolarGrid, ray_hits, rows_to_points, sample_polar
from sonoshift.judges.ga.polar_refiner import (
    POLAR_KEY,
    PolarRefiner,
    blend_ellipses,
    column_loss,
    decode_rows,
    fit_points,
    outline_confidence,
)

GRID = PolarGrid(angles=64, radii=48, s_min=0.75, s_max=1.25)
TRUTH = (150.3, 118.7, 70.0, 52.0, 25.0)  # cx, cy, a, b, angle (degrees)
PRIOR = (153.0, 115.0, 62.0, 48.0, 35.0)  # an estimate a few pixels off, 6 px of radius too small


def drawn(ellipse, shape=(240, 300), inside=220, outside=30) -> np.ndarray:
    """The filled ellipse rasterized by area coverage (8 x 8 samples per pixel, pixel centres at integers), so the
    half-grey level lies on the true outline; grey levels ``inside`` / ``outside``."""
    cx, cy, a, b, ang = ellipse
    t = math.radians(ang)
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    y = np.arange(shape[0])[:, None, None, None] + sub[None, None, :, None]
    x = np.arange(shape[1])[None, :, None, None] + sub[None, None, None, :]
    u = (x - cx) * math.cos(t) + (y - cy) * math.sin(t)
    v = -(x - cx) * math.sin(t) + (y - cy) * math.cos(t)
    cover = ((u / a) ** 2 + (v / b) ** 2 <= 1).mean((2, 3))
    return np.round(outside + (inside - outside) * cover).astype(np.uint8)


def test_ray_hits_land_on_the_drawn_ellipse():
    # walk each ray in 1/2000-scale steps over the area-rasterized ellipse: its half-grey level is the outline
    img = drawn(TRUTH, inside=255, outside=0).astype(np.float32) / 255
    rows = ray_hits(PRIOR, TRUTH, GRID)
    fine = PolarGrid(GRID.angles, 2001, GRID.s_min, GRID.s_max)
    strip = sample_polar(img, PRIOR, fine)
    walked = np.array([np.interp(0.5, strip[::-1, j], np.arange(fine.radii)[::-1]) for j in range(GRID.angles)])
    dist = np.hypot(*(rows_to_points(PRIOR, rows, GRID) - rows_to_points(PRIOR, walked, fine)).T)
    assert np.isfinite(rows).all()
    assert dist.max() < 0.5  # pixels


def test_points_on_the_truth_fit_back_to_it():
    pts = rows_to_points(PRIOR, ray_hits(PRIOR, TRUTH, GRID), GRID)
    e = fit_points(pts, (240, 300), 1.0)
    assert e[:4] == pytest.approx(TRUTH[:4], abs=0.05)
    assert (e[4] - TRUTH[4]) % 180 == pytest.approx(0, abs=0.1) or (e[4] - TRUTH[4]) % 180 == pytest.approx(180, abs=0.1)


def test_strip_shows_the_outline_where_the_rays_cross_it():
    img = drawn(TRUTH).astype(np.float32) / 255
    strip = sample_polar(img, PRIOR, GRID)
    rows = ray_hits(PRIOR, TRUTH, GRID)
    mid = 0.5 * (30 + 220) / 255
    crossing = np.array([np.interp(mid, strip[::-1, j], np.arange(GRID.radii)[::-1]) for j in range(GRID.angles)])
    assert np.abs(crossing - rows).max() < 0.5  # rows


def test_column_loss_and_decoding_against_hand_values():
    logits = torch.tensor([[1.0], [2.0], [0.5]])[None]  # (1, radii 3, angles 1)
    logp = torch.log_softmax(logits[0, :, 0], 0)
    expected = -(0.75 * logp[0] + 0.25 * logp[1])
    assert float(column_loss(logits, torch.tensor([[0.25]]))) == pytest.approx(float(expected))
    radii = 40
    r = np.arange(radii)[:, None]
    targets = np.array([10.3, 25.75, 31.0])
    peaks = -0.5 * ((r - targets[None, :]) / 1.2) ** 2
    far = np.log(0.2) - 0.5 * ((r - 2.0) / 1.0) ** 2  # a weaker second mode far away does not pull the estimate
    lg = torch.from_numpy(np.logaddexp(peaks, far)).float()
    assert decode_rows(lg) == pytest.approx(targets, abs=0.05)


def test_outline_confidence_against_hand_values():
    # column j: logit L_j at row 20, 0 elsewhere (48 rows): the mass within 4 rows of the mode is
    # (e^L + 8) / (e^L + 47); uniform columns have their mode at row 0, so rows 0-4 count: 5 / 48
    levels = torch.tensor([0.0, 2.0, 50.0])
    lg = torch.zeros(48, 3)
    lg[20] = levels
    hand = [5 / 48, (math.exp(2) + 8) / (math.exp(2) + 47), 1.0]
    assert outline_confidence(lg) == pytest.approx(np.mean(hand), abs=1e-6)
    assert outline_confidence(lg[:, 1:2]) == pytest.approx(hand[1], abs=1e-6)


def test_blend_ellipses():
    e = (10.0, 20.0, 30.0, 20.0, 40.0)
    assert blend_ellipses(e, e, 0.5) == pytest.approx(e)
    c = blend_ellipses((0, 0, 10, 10, 0), (2, 4, 20, 20, 0), 0.5)
    assert c[:4] == pytest.approx((1, 2, 15, 15))
    # orientation has period 180 degrees: 170 and 10 meet at 0, not at 90
    t = blend_ellipses((0, 0, 30, 20, 170), (0, 0, 30, 20, 10), 0.5)[4] % 180
    assert min(t, 180 - t) == pytest.approx(0, abs=1e-6)


class EdgeFinder(nn.Module):
    """Row logits = k x (the fall in brightness from the row to the next one): a bright-inside outline is the mode.
    Input (B, 1, radii, angles + pads), output (B, 1, radii, angles + pads), like the U-Net's."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(8.0))

    def forward(self, x):
        fall = x[:, :, :-1] - x[:, :, 1:]
        return self.k * torch.cat([fall, torch.zeros_like(x[:, :, :1])], 2)


def refiner(blend: float, iterations: int = 2, tta: bool = True) -> PolarRefiner:
    return PolarRefiner(Segmenter(EdgeFinder(), ("outline",), GRID.radii), GRID, iterations, tta, blend)


def test_refine_moves_an_estimate_onto_the_outline_and_blends():
    frame = drawn(TRUTH)
    truth_hc = ellipse_perimeter(TRUTH[2], TRUTH[3])
    (full,) = refiner(1.0).refine([frame], [PRIOR])
    # the outline is the fall in brightness across the drawn edge: within about half a pixel
    assert full[:2] == pytest.approx(TRUTH[:2], abs=0.6)
    assert ellipse_perimeter(full[2], full[3]) == pytest.approx(truth_hc, abs=4.0)  # ~0.6 px of radius
    assert abs(ellipse_perimeter(PRIOR[2], PRIOR[3]) - truth_hc) > 15  # the prior was clearly off
    (half,) = refiner(0.5).refine([frame], [PRIOR])
    assert half[:4] == pytest.approx(blend_ellipses(PRIOR, full, 0.5)[:4], abs=1e-6)
    (none,) = refiner(0.0).refine([frame], [PRIOR])
    assert none[:4] == pytest.approx(PRIOR[:4])


class Constant(nn.Module):
    """The same logit for every row: the softmax over a column is uniform."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros_like(x) + self.w


def test_strip_errors_against_hand_values():
    from sonoshift.judges.ga.polar_refiner import strip_errors

    frame = drawn(TRUTH).astype(np.float32) / 255
    # the prior is the truth: its rays meet the outline at s = 1, row (1 - 0.75) / 0.5 x 47 = 23.5
    assert ray_hits(TRUTH, TRUTH, GRID) == pytest.approx(np.full(GRID.angles, 23.5), abs=1e-4)
    flat = strip_errors(Constant(), [frame], [TRUTH], GRID, (0.0, 0.0, 0.0), repeats=2)
    # uniform columns: the loss is log(radii) whatever the target; the decoded row is the mean of rows 0..4
    assert flat["column_loss"] == pytest.approx(math.log(GRID.radii), abs=1e-5)
    assert flat["row_error"] == pytest.approx(23.5 - 2.0, abs=1e-3) and flat["strips"] == 2
    edge = EdgeFinder()
    edge.train()
    found = strip_errors(edge, [frame, frame], [TRUTH, TRUTH], GRID, (0.03, 0.05, 6.0), seed=3)
    assert found["strips"] == 8 and found["row_error"] < 1.0  # the edge is where the moved rays cross it
    assert found["column_loss"] < flat["column_loss"] and edge.training  # the caller's mode is restored
    again = strip_errors(edge, [frame, frame], [TRUTH, TRUTH], GRID, (0.03, 0.05, 6.0), seed=3)
    assert again == found  # the draws come from the seed


def test_polar_config_is_refused_with_crops():
    from sonoshift.downstream.hc18 import Hc18Config

    with pytest.raises(ConfigValueError, match="head_polar"):
        Hc18Config(head_polar=True, head_crops=4)
    from sonoshift.downstream.hc18 import PolarSpec

    with pytest.raises(ConfigValueError, match="multiples of the U-Net's total stride 8"):
        Hc18Config(head_polar=True, polar=PolarSpec(radii=100))
    assert Hc18Config(head_polar=True, polar=PolarSpec(radii=104, angles=64)).polar.radii == 104
    with pytest.raises(ValueError, match="polar grid"):
        PolarGrid(s_min=1.1)


def test_polar_refiner_trains_saves_and_joins_the_estimator(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config, PolarSpec, train_hc18_segmenter
    from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig, load_segmenter
    from sonoshift.judges.ga.estimator import load_ga_estimator
    from sonoshift.judges.ga.hc18_report import build_estimator

    small = dict(data_dir=str(fake_hc18), val_fraction=0.25, model=ModelConfig(channels=(4, 8), strides=(2,)))
    seg_cfg = Hc18Config(image_size=32, train=SegmenterTrainConfig(steps=5, batch_size=4), **small)
    pol_cfg = Hc18Config(image_size=16, head_polar=True, polar=PolarSpec(angles=16, radii=16),
                         train=SegmenterTrainConfig(steps=3, batch_size=4), **small)
    train_hc18_segmenter(seg_cfg, tmp_path / "seg", progress=False)
    pol, _ = train_hc18_segmenter(pol_cfg, tmp_path / "pol", progress=False)
    loaded = load_segmenter(tmp_path / "pol")
    meta = loaded.info[POLAR_KEY]
    assert meta["grid"] == {"angles": 16, "radii": 16, "s_min": 0.75, "s_max": 1.25} and meta["train_images"] == 9
    assert loaded.classes == ("outline",) and math.isfinite(loaded.info["final_loss"])
    strips = loaded.info["strip_validation"]  # 4 draws per image with a mask ellipse: 9 training, 3 held out
    assert strips["train"]["strips"] == 36 and strips["heldout"]["strips"] == 12
    assert all(0 <= strips[k]["row_error"] < 16 and strips[k]["column_loss"] > 0 for k in strips)
    x = torch.randn(2, 1, 16, 16 + 32)
    assert torch.equal(loaded.model(x), pol.model(x))  # the weights round-trip
    build_estimator([tmp_path / "seg", tmp_path / "pol"], fake_hc18, tmp_path / "est")
    est = load_ga_estimator(tmp_path / "est")
    assert len(est.polar) == 1 and est.polar[0].grid == PolarGrid(16, 16, 0.75, 1.25)
    assert est.polar[0].iterations == 2 and est.polar[0].blend == 0.5 and est.polar[0].tta
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    # a second polar network (another seed) joins the first as one refiner: their column logits averaged
    train_hc18_segmenter(dataclasses.replace(pol_cfg, train=SegmenterTrainConfig(steps=3, batch_size=4, seed=1)),
                         tmp_path / "pol1", progress=False)
    from typer.testing import CliRunner

    from sonoshift.cli.main import app

    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "seg"), "--segmenter", str(tmp_path / "pol"),
                                 "--segmenter", str(tmp_path / "pol1"), "--no-polar-tta", "-o", str(tmp_path / "est2"),
                                 "--data-root", str(fake_hc18.parent)])
    assert r.exit_code == 0, r.output
    (two,) = load_ga_estimator(tmp_path / "est2").polar
    assert len(two.members) == 1 and not two.tta and (tmp_path / "est2" / "polar_1" / "segmenter.json").is_file()
    strips = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    x = torch.from_numpy(strips)[:, None]
    wrapped = torch.cat([x[..., -16:], x, x[..., :16]], -1)  # PAD = 16 angles wrapped onto each side
    with torch.no_grad():
        ref = torch.stack([n.model(wrapped)[:, 0, :, 16:-16] for n in (two.segmenter, *two.members)]).mean(0)
    torch.testing.assert_close(two.logits(strips), ref, rtol=0, atol=1e-5)
    other = dataclasses.replace(loaded, info={**loaded.info, POLAR_KEY: {**meta, "grid": {**meta["grid"], "angles": 32}}})
    with pytest.raises(SonoshiftError, match="same grid"):
        PolarRefiner.from_segmenters([loaded, other])


def test_cross_validation_measures_with_and_without_the_polar_stage(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config, PolarSpec
    from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig
    from sonoshift.judges.ga.hc18_cv import cross_validate

    small = dict(data_dir=str(fake_hc18), model=ModelConfig(channels=(4, 8), strides=(2,)))
    seg_cfg = Hc18Config(image_size=32, train=SegmenterTrainConfig(steps=60, batch_size=4, lr=5e-3), **small)
    pol_cfg = Hc18Config(image_size=16, head_polar=True, polar=PolarSpec(angles=16, radii=16),
                         train=SegmenterTrainConfig(steps=3, batch_size=4), **small)
    s = cross_validate([seg_cfg, pol_cfg], tmp_path / "cv", folds=2, progress=False)
    names = sorted(f"{i:03d}_HC.png" for i in range(12))
    with_polar = pd.read_csv(tmp_path / "cv" / "per_image.csv")
    without = pd.read_csv(tmp_path / "cv" / "per_image_without_polar.csv")
    first = pd.read_csv(tmp_path / "cv" / "per_image_first_stage.csv")
    assert sorted(with_polar["name"]) == sorted(without["name"]) == sorted(first["name"]) == names
    # one first stage and no crop refiner: without the polar stage the estimator is its first stage
    merged = without.merge(first, on="name")
    assert np.allclose(merged["hc_mm_x"], merged["hc_mm_y"], equal_nan=True)
    assert s["without_polar_hc_abs_err_mm_mean"] == pytest.approx(
        (without["hc_mm"] - without["hc_true_mm"]).abs().mean(), nan_ok=True)
    found = with_polar["head_found"].astype(bool).to_numpy()
    assert found.sum() >= 10
    # the polar stage's outline confidence for every head it looked at (a column's mode holds at least 1 / radii of
    # it), none without it
    conf = with_polar["outline_confidence"]
    assert conf[~found].isna().all() and ((conf[found] >= 1 / 16 - 1e-6) & (conf[found] <= 1 + 1e-6)).all()
    assert without["outline_confidence"].isna().all()
    # the (barely trained) polar stage moves every found head
    assert (np.abs(with_polar["hc_mm"].to_numpy() - without["hc_mm"].to_numpy())[found] > 1e-6).all()
    # per fold, the polar network's strip errors as its checkpoint recorded them
    folds = pd.read_csv(tmp_path / "cv" / "folds.csv")
    for k in (0, 1):
        meta = json.loads((tmp_path / "cv" / f"fold_{k}" / "segmenter_1" / "segmenter.json").read_text())
        row = folds[folds["fold"] == k].iloc[0]
        for part in ("train", "heldout"):
            assert row[f"polar_{part}_row_error"] == pytest.approx(meta["info"]["strip_validation"][part]["row_error"])


def test_onnx_runtime_gives_the_torch_polar_ellipse():
    from sonoshift.downstream.segmenter import ModelConfig, build_unet
    from sonoshift.judges.ga.estimator import GaEstimator
    from sonoshift.judges.ga.onnx_net import OrtNet, with_runtime

    torch.manual_seed(0)
    net = build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 1).eval()
    member = Segmenter(build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 1).eval(), ("outline",), GRID.radii)
    pol = PolarRefiner(Segmenter(net, ("outline",), GRID.radii), GRID, 1, True, 1.0, members=(member,))
    dummy = Segmenter(build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2).eval(), ("background", "head"), 32)
    est = with_runtime(GaEstimator(dummy, polar=(pol,)), "onnx", threads=1)
    frame = drawn(TRUTH)
    (e_torch,) = pol.refine([frame], [PRIOR])
    (e_ort,) = est.polar[0].refine([frame], [PRIOR])
    assert np.abs(np.subtract(e_torch[:4], PRIOR[:4])).max() > 0.1  # the untrained net did move the estimate
    assert e_ort == pytest.approx(e_torch, abs=1e-3)
    assert all(isinstance(n.model, OrtNet) for n in est.polar[0].networks)  # every polar network runs in ORT
