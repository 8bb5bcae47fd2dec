"""The scale check (judges/ga/scale_check.py) against a drawn head and an edge-finding stand-in for the wide-view
network: the skull is stable, an ellipse around it off its centre (a sac) is not, the search finds the skull, the
replacement rule in hand cases; its storage by `ga build --scale-check`, ONNX Runtime, and the cross-validation
that trains it per fold."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.cli.main import app
from sonoshift.downstream.segmenter import ModelConfig, Segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.head_fit import EllipseFit, HeadFit
from sonoshift.judges.ga.polar import PolarGrid
from sonoshift.judges.ga.polar_refiner import PolarRefiner
from sonoshift.judges.ga.scale_check import returns, scale_checked, search, starts
from test_ga_polar import EdgeFinder, drawn
from test_ga_border_route import _tiny, onnx_alike
from hc18_data import fake_hc18  # noqa: F401 (fixture)

WIDE = PolarGrid(angles=64, radii=96, s_min=0.45, s_max=1.9)
SKULL = (150.3, 118.7, 50.0, 38.0, 25.0)  # cx, cy, a, b, angle: the head drawn bright on a dark frame


def wide() -> PolarRefiner:
    return PolarRefiner(Segmenter(EdgeFinder(), ("outline",), WIDE.radii), WIDE, iterations=1, tta=False, blend=1.0)


def fit(cx, cy, a, b, angle, border=0.0, confidence=math.nan) -> HeadFit:
    return HeadFit(EllipseFit(cx=cx, cy=cy, a=a, b=b, angle=angle), border, confidence)


def grown(k: float, dx: float = 0.0, off: float = 0.0, **kw) -> HeadFit:
    """The skull's ellipse times ``k`` about a centre moved by ``dx`` of its major semi-axis along it, in the
    convention of an estimator with offset ``off`` (its semi-axes grown by ``off`` are the HC ellipse)."""
    cx, cy, a, b, ang = SKULL
    t = math.radians(ang)
    return fit(cx + dx * a * math.cos(t), cy + dx * a * math.sin(t), a * k - off, b * k - off, ang, **kw)


def skull_hc() -> float:
    return ellipse_perimeter(SKULL[2], SKULL[3])


def test_starts_against_hand_values():
    c, right = starts((10.0, 20.0, 4.0, 2.0, 0.0), 0.5, [(0, 0), (0.5, 0)])
    assert c == (10.0, 20.0, 2.0, 1.0, 0.0) and right == (12.0, 20.0, 2.0, 1.0, 0.0)
    (up,) = starts((10.0, 20.0, 4.0, 2.0, 90.0), 1.0, [(0.5, 0.5)])  # axes turned by 90 degrees
    assert up[:2] == pytest.approx((9.0, 22.0)) and up[2:] == (4.0, 2.0, 90.0)


def test_the_skull_is_stable_and_an_ellipse_around_it_off_its_centre_is_not():
    frame = drawn(SKULL)
    cases = [dataclasses.astuple(grown(k, dx).ellipse) for k, dx in ((1.0, 0.0), (1.6, 0.3), (1.03, 0.0))]
    # from inside the skull the wide view comes back to it (3 % off is within the tolerance); from inside a 1.6 x
    # ellipse off the head's centre (a sac) it finds the skull, not that ellipse
    assert returns(wide(), [frame] * 3, cases).tolist() == [2, 0, 2]
    found = search(wide(), frame, cases[1])
    assert found is not None and ellipse_perimeter(found[2], found[3]) == pytest.approx(skull_hc(), rel=0.02)
    assert found[:2] == pytest.approx(SKULL[:2], abs=1.0)


def test_an_unstable_measurement_is_replaced_by_the_skull():
    frame = drawn(SKULL)
    sac, right = grown(1.6, 0.3, border=0.03, confidence=0.4), grown(1.02, confidence=0.8)
    out, unstable = scale_checked(wide(), [frame] * 3, [sac, right, HeadFit(None)], 0.0)
    assert unstable.tolist() == [True, False, False]
    assert ellipse_perimeter(out[0].ellipse.a, out[0].ellipse.b) == pytest.approx(skull_hc(), rel=0.02)
    assert (out[0].ellipse.cx, out[0].ellipse.cy) == pytest.approx(SKULL[:2], abs=1.0)
    assert (out[0].border_fraction, out[0].outline_confidence) == (0.03, 0.4)  # the head's, not the search's
    assert out[1] is right and not out[2].found  # a stable measurement and a missing head are left alone
    # the check reads the semi-axes grown by the offset and gives fits back in the estimator's convention
    (got,), flags = scale_checked(wide(), [frame], [grown(1.6, 0.3, off=3.0)], 3.0)
    assert flags.tolist() == [True]
    assert ellipse_perimeter(got.ellipse.a + 3.0, got.ellipse.b + 3.0) == pytest.approx(skull_hc(), rel=0.02)
    # a frame with no edge for the wide view to find: nothing comes back, nothing is found, the measurement stays
    flat = np.full_like(frame, 90)
    (kept,), flags = scale_checked(wide(), [flat], [sac], 0.0)
    assert flags.tolist() == [True] and kept is sac


def test_the_estimator_replaces_a_sac_measurement_on_frames_and_on_files(tmp_path):
    from PIL import Image

    from sonoshift.judges.ga.estimator import GaEstimator, measure, measure_files
    from test_ga_estimator import BrightIsHead

    # a faint sac (just above mid-grey) 1.6 x around the skull and off its centre, the bright skull inside it: a first
    # stage that calls every pixel above mid-grey head measures the sac
    sac = dataclasses.astuple(grown(1.6, 0.3).ellipse)
    frame = np.maximum(drawn(sac, inside=135, outside=120), drawn(SKULL, inside=230, outside=0))
    plain = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 128), offset_px=0.0, tta=False)
    checked = dataclasses.replace(plain, scale_check=wide())
    assert measure(plain, [frame], [1.0])["hc_mm"][0] == pytest.approx(ellipse_perimeter(*sac[2:4]), rel=0.03)
    got = measure(checked, [frame], [1.0])["hc_mm"][0]
    assert got == pytest.approx(skull_hc(), rel=0.03)
    # files go through the same stages as frames: the check runs with no refiner before it
    Image.fromarray(frame).save(tmp_path / "sac.png")
    assert measure_files(checked, [tmp_path / "sac.png"], [1.0])["hc_mm"][0] == pytest.approx(got, rel=1e-6)


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
    from sonoshift.judges.ga.estimator import load_ga_estimator
    from sonoshift.judges.ga.onnx_net import OrtNet
    from test_ga_estimator import head_image

    _tiny(tmp_path / "seg", 32)
    _tiny(tmp_path / "crop_like", 24)
    _wide_polar(tmp_path / "wide", fake_hc18)
    _wide_polar(tmp_path / "wide_other", fake_hc18, seed=1)
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "seg"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--scale-check", str(tmp_path / "wide")])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.scale_check is not None and not est.polar
    assert est.scale_check.grid == PolarGrid(16, 16, 0.45, 1.9)
    assert (est.scale_check.iterations, est.scale_check.tta, est.scale_check.blend) == (1, False, 1.0)
    assert (tmp_path / "est" / "scale_check" / "model.safetensors").is_file()
    assert len(pd.read_csv(tmp_path / "est" / "hc18_validation.csv")) == 3
    fast = onnx_alike(est, [np.asarray(head_image(60, 80, 20.0, 14.0))])
    assert isinstance(fast.scale_check.segmenter.model, OrtNet)
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
