"""bench/hc18_learning_curve.py: the power-law fit and the paired table, against values worked out by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonoshift.errors import SonoshiftError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hc18_learning_curve", ROOT / "bench" / "hc18_learning_curve.py")
lc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lc)


def test_power_law_fit_recovers_an_exact_power_law() -> None:
    n = np.array([100.0, 150.0, 200.0])
    a, b = lc.power_law_fit(n, 12.0 * n ** -0.3)
    assert a == pytest.approx(12.0) and b == pytest.approx(0.3)
    # halving the error per quadrupled data is b = 0.5: 4 mm at 100 images -> 2 mm at 400
    a, b = lc.power_law_fit([100, 400], [4.0, 2.0])
    assert b == pytest.approx(0.5) and a * 400 ** -b == pytest.approx(2.0)
    assert lc.images_for(a, b, 2.0) == pytest.approx(400.0) and lc.images_for(a, b, 4.0) == pytest.approx(100.0)
    with pytest.raises(SonoshiftError, match="two or more distinct"):
        lc.power_law_fit([100, 100], [3.0, 2.0])


def test_curve_table_pairs_images_by_name_against_the_largest_fraction() -> None:
    big = pd.DataFrame({"name": ["a", "b", "c", "d"], "hc_abs_err_mm": [1.0, 2.0, 3.0, 4.0]})
    small = pd.DataFrame({"name": ["d", "c", "b", "a"], "hc_abs_err_mm": [5.0, 3.0, 2.0, 3.0]})  # other order
    t = lc.curve_table({1.0: big, 0.5: small}, {1.0: 200.0, 0.5: 100.0}).set_index("fraction")
    assert list(t.index) == [0.5, 1.0]
    assert t.loc[0.5, "mean"] == pytest.approx(3.25) and t.loc[0.5, "median"] == pytest.approx(3.0)
    assert t.loc[0.5, "minus_largest"] == pytest.approx((2 + 0 + 0 + 1) / 4)  # a: +2, b: 0, c: 0, d: +1
    assert 0.0 <= t.loc[0.5, "lo"] <= 0.75 <= t.loc[0.5, "hi"] <= 2.0
    assert t.loc[1.0, "minus_largest"] == 0.0 and t.loc[1.0, "train_images"] == 200.0


def test_paired_interval_of_a_constant_difference_is_that_constant() -> None:
    assert lc.paired_interval(np.full(30, 0.4)) == pytest.approx((0.4, 0.4))
