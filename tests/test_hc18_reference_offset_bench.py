"""bench/hc18_reference_offset.py: the skull-echo offset of an ellipse on a drawn ring, the summary against values
worked out by hand, and one clear sentence for a missing table."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from sonoshift.downstream.ellipse import EllipseFit

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hc18_reference_offset", ROOT / "bench" / "hc18_reference_offset.py")
ro = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ro)


def ring_image(a: float, b: float, angle: float) -> np.ndarray:
    img = np.full((240, 300), 20, np.uint8)
    cv2.ellipse(img, ((150.0, 120.0), (2 * a, 2 * b), angle), 230, 2, cv2.LINE_AA)
    return img


@pytest.mark.parametrize("grow", [1.0, 1.05, 0.96])
def test_echo_offset_finds_the_drawn_ring(grow):
    a, b, angle = 90.0, 70.0, 25.0
    img = ring_image(a, b, angle)
    e = EllipseFit(cx=150.0, cy=120.0, a=a * grow, b=b * grow, angle=angle)
    # the ellipse drawn `grow` times the ring: the brightest scale is 1 / grow, the offset grow (grid step 0.0025)
    assert ro.echo_offset(img, e) == pytest.approx(grow, abs=0.006)


def test_echo_offset_follows_the_rotation():
    # a ring rotated by 25 degrees is not found by the same ellipse at another angle: the profile's peak is lower
    img = cv2.GaussianBlur(ring_image(90.0, 60.0, 25.0).astype(np.float32), (0, 0), 1.5)
    right = ro.ring_mean(img, EllipseFit(150.0, 120.0, 90.0, 60.0, 25.0), 1.0)
    wrong = ro.ring_mean(img, EllipseFit(150.0, 120.0, 90.0, 60.0, 115.0), 1.0)
    assert right > 150 and wrong < 100


def test_ring_mean_outside_the_image_is_nan():
    assert math.isnan(ro.ring_mean(np.zeros((10, 10)), EllipseFit(500.0, 500.0, 5.0, 4.0, 0.0), 1.0))


def test_summary_against_hand_values():
    rows = pd.DataFrame({"hc_true_mm": [100.0, 200.0, 100.0, 200.0],
                         "est_offset": [1.03, 1.03, 1.04, 1.03],
                         "ref_offset": [1.05, 1.02, 1.06, 1.04],
                         "err_mm": [-1.0, 2.0, -2.0, 0.0]})
    s = ro.summary(rows)
    assert s["est_median"] == pytest.approx(1.03) and s["est_mad"] == pytest.approx(0.0)
    assert s["ref_median"] == pytest.approx(1.045) and s["ref_mad"] == pytest.approx(0.01)
    # the reference's deviation in mm, sign flipped (drawn further out -> the estimate is short)
    ref_dev = np.array([-(1.05 / 1.045 - 1) * 100, -(1.02 / 1.045 - 1) * 200, -(1.06 / 1.045 - 1) * 100,
                        -(1.04 / 1.045 - 1) * 200])
    err = np.array([-1.0, 2.0, -2.0, 0.0])
    x, y = ref_dev - ref_dev.mean(), err - err.mean()
    assert s["corr_ref"] == pytest.approx((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))
    # ranks of ref_dev: 2, 4, 1, 3; of err: 2, 4, 1, 3 -> a perfect rank correlation
    assert s["rank_ref"] == pytest.approx(1.0)


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "hc18_reference_offset.py"), *args],
                          capture_output=True, text=True)


def test_missing_table_or_images_is_one_sentence(tmp_path):
    (tmp_path / "hc18" / "training_set").mkdir(parents=True)
    r = run(str(tmp_path / "no.csv"), "--data-root", str(tmp_path))
    assert r.returncode == 1 and r.stderr.strip().startswith("error: No per-image table at")
    pd.DataFrame({"name": ["a.png"], "hc_mm": [1.0]}).to_csv(tmp_path / "t.csv", index=False)
    r = run(str(tmp_path / "t.csv"), "--data-root", str(tmp_path))
    assert r.returncode == 1 and "lacks the columns head_found, hc_true_mm" in r.stderr
    none_found = pd.DataFrame({c: [0.0] for c in ro.COLUMNS}).assign(name="a.png", head_found=False)
    none_found.to_csv(tmp_path / "none.csv", index=False)
    r = run(str(tmp_path / "none.csv"), "--data-root", str(tmp_path))
    assert r.returncode == 1 and r.stderr.strip().startswith("error: Only 0 head(s) in")
    r = run(str(tmp_path / "t.csv"), "--data-root", str(tmp_path / "elsewhere"))
    assert r.returncode == 1 and r.stderr.strip().startswith("error: No HC18 images at")
    assert "Traceback" not in r.stderr


def test_image_not_in_the_hc18_folder_is_one_sentence(tmp_path):
    hc18 = ROOT.parent / "shared" / "data" / "hc18"
    if not (hc18 / "training_set").is_dir():
        pytest.skip("the public HC18 data (../shared/data/hc18) is absent")
    table = pd.DataFrame({c: [1.0] for c in ro.COLUMNS}).assign(name="no_such_image.png", head_found=True)
    table.to_csv(tmp_path / "t.csv", index=False)
    r = run(str(tmp_path / "t.csv"), "--data-root", str(hc18.parent))
    assert r.returncode == 1 and r.stderr.strip().startswith("error: 1 image(s) of the table are not in")
    assert "Traceback" not in r.stderr
