"""The cut correction (judges/ga/cut_correction.py): its least-squares fit, its effect on the heads an estimator
measures (only those whose ellipse crosses the border), its storage by `ga build --cut-correction`, and refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.cli.main import app
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.cut_correction import CutCorrection, fit_cut_correction, load_cut_correction, uncorrected
from sonoshift.judges.ga.estimator import GaEstimator, load_ga_estimator, measure
from test_ga_border_route import _tiny
from test_ga_estimator import BrightIsHead, fake_hc18, head_image  # noqa: F401 (fixture)


def test_fit_recovers_the_coefficients_that_made_the_rows():
    rng = np.random.default_rng(0)
    s, w = rng.uniform(0, 0.4, 200), rng.integers(0, 2, 200).astype(float)
    hc = rng.uniform(100, 300, 200)
    # heads cut at the sides lose 30 % of log-HC per unit of outside share, at the top or bottom 60 % plus a square
    true = hc * np.exp((1 - w) * 0.3 * s + w * (0.6 * s + 0.5 * s * s))
    rows = pd.DataFrame({"outside": s, "axial": w, "hc_true_mm": true, "hc_mm": hc})
    rows.loc[0, "outside"] = 0.0  # a head inside the frame does not enter the fit
    rows.loc[0, "hc_true_mm"] = 10 * hc[0]
    c = fit_cut_correction(rows)
    assert c.lateral == pytest.approx((0.3, 0.0), abs=1e-9) and c.axial == pytest.approx((0.6, 0.5), abs=1e-9)
    assert c.heads == 199
    with pytest.raises(SonoshiftError, match="only 5 measured heads cross the image border"):
        fit_cut_correction(rows.head(6))


def test_only_heads_whose_ellipse_crosses_the_border_are_scaled():
    seg = Segmenter(BrightIsHead(), ("background", "head"), 64)
    corr = CutCorrection(lateral=(0.5, 0.0), axial=(0.0, 0.0))
    est = GaEstimator(seg, offset_px=2.0, tta=False)
    fixed = GaEstimator(seg, offset_px=2.0, tta=False, cut_correction=corr)
    whole = head_image(270, 400, 60.0, 60.0)
    frames = [whole[:, 160:], whole]  # a circle of radius 60 cut 40 px right of its centre's left, and uncut
    plain, m = measure(est, frames, [1.0, 1.0]), measure(fixed, frames, [1.0, 1.0])
    s = math.acos(40.5 / 60) / math.pi  # the arc of the circle beyond the left edge
    assert m["hc_mm"][0] / plain["hc_mm"][0] == pytest.approx(math.exp(0.5 * s), abs=0.01)
    # the scaled ellipse is still the measurement: the HC of its semi-axes grown by the offset
    assert m["hc_mm"][0] == pytest.approx(ellipse_perimeter(m["a_px"][0], m["b_px"][0]), rel=1e-6)
    assert m["hc_mm"][1] == plain["hc_mm"][1]
    # an axial-only correction leaves a head cut at the side alone
    side_only = GaEstimator(seg, offset_px=2.0, tta=False, cut_correction=CutCorrection((0.0, 0.0), (0.5, 0.0)))
    assert measure(side_only, frames[:1], [1.0])["hc_mm"][0] == pytest.approx(plain["hc_mm"][0], rel=1e-9)
    # a correction is fitted on what the estimator measures without one (its border estimator's included)
    routed = uncorrected(GaEstimator(seg, cut_correction=corr, border=fixed))
    assert routed.cut_correction is None and routed.border.cut_correction is None


def test_build_stores_the_correction_and_refuses_a_bad_file(fake_hc18, tmp_path):
    _tiny(tmp_path / "a", 32)
    good = tmp_path / "corr.json"
    good.write_text(json.dumps({"correction": {"lateral": [0.1, 0.2], "axial": [0.3, 0.4], "heads": 50}}))
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "a"), "-o", str(tmp_path / "est"),
                                 "--data-root", str(fake_hc18.parent), "--cut-correction", str(good)])
    assert r.exit_code == 0, r.output
    est = load_ga_estimator(tmp_path / "est")
    assert est.cut_correction == CutCorrection((0.1, 0.2), (0.3, 0.4), 50)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lateral": [0.1], "axial": [0.3, 0.4]}))
    with pytest.raises(SonoshiftError, match="two finite coefficients"):
        load_cut_correction(bad)
    r = CliRunner().invoke(app, ["ga", "build", "--segmenter", str(tmp_path / "a"), "-o", str(tmp_path / "est2"),
                                 "--data-root", str(fake_hc18.parent), "--cut-correction", str(bad)])
    assert r.exit_code != 0 and not (tmp_path / "est2").exists()
    with pytest.raises(SonoshiftError, match="does not exist"):
        load_cut_correction(tmp_path / "missing.json")


def test_cut_rows_measure_held_out_heads_cut_at_seeded_random_shares(fake_hc18):
    from sonoshift.judges.ga.cut_correction import MAX_CUT, cut_rows
    from sonoshift.judges.ga.hc18_report import heldout_rows

    names = sorted(p.name for p in (fake_hc18 / "training_set").glob("*_HC.png"))
    seg = Segmenter(BrightIsHead(), ("background", "head"), 64, info={"val_files": names[:6]})
    est = GaEstimator(seg, offset_px=-1.0, tta=False)  # the fake official ellipse is the bright one shrunk by 1 px
    rows = cut_rows(est, fake_hc18, seed=[3, 1], per_image=2)
    again = cut_rows(est, fake_hc18, seed=[3, 1], per_image=2)
    pd.testing.assert_frame_equal(rows, again)
    _, val = heldout_rows(seg, fake_hc18)
    assert len(rows) == 12 and set(rows["name"]) == set(val["filename"]) == set(names[:6])
    assert ((rows["cut"] > 0) & (rows["cut"] <= MAX_CUT)).all() and set(rows["side"]) <= {0, 1, 2, 3}
    official = dict(zip(val["filename"], val["hc_mm"]))
    assert np.allclose(rows["hc_true_mm"], rows["name"].map(official))
    # a network that sees the bright ellipse exactly extrapolates the cut heads well, and their ellipses run on
    # beyond the border
    assert (rows["outside"] > 0).mean() >= 0.8
    assert np.median(np.abs(np.log(rows["hc_mm"] / rows["hc_true_mm"]))) < 0.05


def test_fit_command_refuses_a_single_estimator(tmp_path):
    r = CliRunner().invoke(app, ["ga", "fit-cut-correction", "-e", str(tmp_path / "est"), "-o",
                                 str(tmp_path / "corr.json")])
    assert r.exit_code != 0 and "has no {k}" in str(r.exception)
    assert not (tmp_path / "corr.json").exists()
