"""Single-file outputs (`classify predict`, `ga predict`, `export onnx`): a user's file is never replaced, a path
under a file or a folder given as the file is refused before any work, and a command's own earlier file is
replaced only with its settings unchanged or with --force (sonoshift.outputs.claim_file)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import MIN_OUTLINE_CONFIDENCE, GaEstimator, _records
from sonoshift.judges.ga.head_fit import EllipseFit, HeadFit
from sonoshift.outputs import claim_file, record_file

from hc18_data import head_image
from plane_data import prepared, trained  # noqa: F401 (fixtures)
from test_ga_estimator import BrightIsHead


def test_claim_file_follows_the_output_policy(tmp_path):
    out = tmp_path / "sub" / "table.csv"
    assert claim_file(out, "table", "k1") == "create" and not (tmp_path / "sub").exists()  # nothing made yet
    out.parent.mkdir()
    out.write_text("mine")
    record_file(out, "table", "k1")
    assert claim_file(out, "table", "k1") == "reuse"
    with pytest.raises(SonoshiftError, match="other inputs or settings; pass --force"):
        claim_file(out, "table", "k2")
    assert claim_file(out, "table", "k2", force=True) == "replace"
    with pytest.raises(SonoshiftError, match="holds a sonoshift table, not a report"):
        claim_file(out, "report", "k1", force=True)
    user = tmp_path / "sub" / "notes.csv"
    user.write_text("a user's file")
    with pytest.raises(SonoshiftError, match="not written by sonoshift"):
        claim_file(user, "table", "k1", force=True)
    with pytest.raises(SonoshiftError, match="is a folder; give --out the path of a file"):
        claim_file(tmp_path / "sub", "table", "k1")
    with pytest.raises(SonoshiftError, match="notes.csv is a file, so .* cannot be written under it"):
        claim_file(user / "deeper" / "x.csv", "table", "k1")
    assert user.read_text() == "a user's file" and out.read_text() == "mine"


def _predict(tmp_path, monkeypatch, image, out, *extra):
    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=0.0, tta=False)
    monkeypatch.setattr("sonoshift.cli.ga._load", lambda *a, **k: est)
    Image.fromarray(image).save(tmp_path / "frame.png")
    return CliRunner().invoke(app, ["ga", "predict", str(tmp_path / "est"), str(tmp_path / "frame.png"),
                                    "--pixel-size", "0.5", "-o", str(out), *extra])


def test_ga_predict_keeps_what_it_did_not_write(tmp_path, monkeypatch):
    head = head_image(120, 160, 50.0, 35.0)
    user = tmp_path / "mine.csv"
    user.write_text("keep me")
    r = _predict(tmp_path, monkeypatch, head, user)
    assert r.exit_code != 0 and "not written by sonoshift" in str(r.exception) and user.read_text() == "keep me"
    r = _predict(tmp_path, monkeypatch, head, user / "x.csv")
    assert r.exit_code != 0 and "is a file, so" in str(r.exception)
    (tmp_path / "folder").mkdir()
    r = _predict(tmp_path, monkeypatch, head, tmp_path / "folder")
    assert r.exit_code != 0 and "is a folder" in str(r.exception)
    out = tmp_path / "hc.csv"
    assert _predict(tmp_path, monkeypatch, head, out).exit_code == 0
    first = pd.read_csv(out)
    assert first["head_found"].tolist() == [True]
    assert _predict(tmp_path, monkeypatch, head, out).exit_code == 0  # the same settings again: written anew
    r = _predict(tmp_path, monkeypatch, head, out, "--runtime", "onnx")
    assert r.exit_code != 0 and "pass --force" in str(r.exception)
    pd.testing.assert_frame_equal(pd.read_csv(out), first)


def test_ga_predict_exits_non_zero_when_no_image_has_a_head(tmp_path, monkeypatch):
    out = tmp_path / "hc.csv"
    r = _predict(tmp_path, monkeypatch, np.full((120, 160), 30, np.uint8), out)
    assert r.exit_code != 0 and "no head found in any of the 1 image(s)" in str(r.exception)
    assert pd.read_csv(out)["status"].tolist() == ["no head found"]  # the row still says why
    r = _predict(tmp_path, monkeypatch, head_image(120, 160, 50.0, 35.0), tmp_path / "neg.csv", "--pixel-size",
                 "-1")
    assert r.exit_code != 0 and "must be a positive number of mm per pixel" in str(r.exception)


def test_a_polar_outline_with_no_sure_ray_is_no_head():
    # HC18 heads read 0.24-0.77 (docs/judges.md, session 39); a blank frame's polar refiner reads about 5/96
    est = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), offset_px=0.0, tta=False)
    ellipse = EllipseFit(80.0, 60.0, 40.0, 30.0, 0.0)
    fits = [HeadFit(ellipse, 0.0, c) for c in (0.05, MIN_OUTLINE_CONFIDENCE, 0.5, math.nan)]
    rows = _records(est, ["blank", "edge", "head", "no polar stage"], fits, [0.5] * 4)
    assert [r["status"] for r in rows] == ["no head found", "ok", "ok", "ok"]
    assert math.isnan(rows[0]["hc_mm"]) and rows[0]["outline_confidence"] == 0.05  # the row keeps why
    assert rows[2]["hc_mm"] == pytest.approx(rows[3]["hc_mm"]) and rows[2]["hc_mm"] > 0


def test_classify_predict_keeps_what_it_did_not_write(trained, tmp_path):  # noqa: F811 (fixture)
    frame = tmp_path / "f.png"
    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(frame)
    user = tmp_path / "planes.csv"
    user.write_text("keep me")
    base = ["classify", "predict", str(trained[1]), str(frame), "--no-crop", "-o"]
    r = CliRunner().invoke(app, [*base, str(user)])
    assert r.exit_code != 0 and "not written by sonoshift" in str(r.exception) and user.read_text() == "keep me"
    out = tmp_path / "p.csv"
    assert CliRunner().invoke(app, [*base, str(out)]).exit_code == 0
    r = CliRunner().invoke(app, [*base, str(out), "--adapt"])
    assert r.exit_code != 0 and "pass --force" in str(r.exception)
