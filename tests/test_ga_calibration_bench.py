"""bench/ga_calibration_cv.py: calibrations are fitted on the other folds only (a fold's own truth never enters)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "ga_calibration_cv", Path(__file__).resolve().parents[1] / "bench" / "ga_calibration_cv.py")
cal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cal)


def test_cross_fitted_shift_uses_only_the_other_folds():
    rng = np.random.default_rng(0)
    x = rng.uniform(50, 330, 60)
    fold = np.repeat(np.arange(3), 20)
    bias = np.array([1.0, -2.0, 4.0])[fold]  # each fold its own offset
    y = x + bias
    got = cal.cross_fitted(x, y, fold, "shift")
    for k in range(3):
        others = np.median((y - x)[fold != k])
        np.testing.assert_allclose(got[fold == k], x[fold == k] + others)


def test_line_recovers_an_exact_linear_relation_and_robust_line_ignores_outliers():
    rng = np.random.default_rng(1)
    x = rng.uniform(50, 330, 80)
    y = 3.0 + 0.97 * x
    fold = np.tile(np.arange(4), 20)
    np.testing.assert_allclose(cal.cross_fitted(x, y, fold, "line"), y, atol=1e-8)
    y_out = y.copy()
    y_out[::10] += 40.0  # gross outliers in every fold
    got = cal.cross_fitted(x, y_out, fold, "robust line")
    clean = np.ones(len(x), bool)
    clean[::10] = False
    np.testing.assert_allclose(got[clean], y[clean], atol=1e-6)


def test_band_shift_corrects_each_band_by_its_own_median():
    x = np.array([60.0, 80, 150, 200, 280, 300] * 4)
    y = x + np.where(x < 110, 2.0, np.where(x < 250, 0.0, -5.0))
    fold = np.repeat(np.arange(4), 6)
    np.testing.assert_allclose(cal.cross_fitted(x, y, fold, "band shift"), y)


def test_growth_gate_is_chosen_on_the_other_folds():
    y = np.full(40, 100.0)
    first = y + 1.0
    refined = y.copy()
    refined[::5] = 130.0  # every fifth refinement grows a head by 1.29x: wrong
    fold = np.tile(np.arange(4), 10)
    hc, chosen = cal.cross_fitted_gate(first, refined, y, fold)
    assert all(g < 1.29 for g in chosen)
    np.testing.assert_allclose(hc, np.where(refined > 1.2 * first, first, refined))
    np.testing.assert_allclose(cal.gated(first, refined, np.inf), refined)
