"""bench/ga_border.py: the per-estimator summary of heads cut by the border, against values worked out by hand, and
its plot."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ga_border", ROOT / "bench" / "ga_border.py")
gb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gb)


def rows() -> pd.DataFrame:
    # two estimators, two images in two folds, uncut and cut by 20 %; estimator "b" misses one cut head
    true = [100.0, 200.0]
    got = {("a", 0.0): [101.0, 198.0], ("a", 0.2): [96.0, 190.0],
           ("b", 0.0): [100.5, 201.0], ("b", 0.2): [99.0, math.nan]}
    out = []
    for (est, cut), hc in got.items():
        for i, (t, h) in enumerate(zip(true, hc)):
            out.append({"estimator": est, "fold": i, "name": f"{i}.png", "cut": cut, "hc_true_mm": t, "hc_mm": h,
                        "err_mm": abs(h - t), "border_fraction": 0.1 * cut})
    return pd.DataFrame(out)


def test_summary_against_hand_values(tmp_path):
    s = gb.summary(rows()).set_index(["estimator", "cut"])
    assert s.loc[("a", 0.0), "mean"] == pytest.approx(1.5) and s.loc[("a", 0.2), "mean"] == pytest.approx(7.0)
    assert s.loc[("a", 0.2), "vs_uncut"] == pytest.approx((5 + 8) / 2)
    assert s.loc[("b", 0.2), "mean"] == pytest.approx(1.0) and s.loc[("b", 0.2), "no_head"] == 1
    assert s.loc[("b", 0.2), "vs_uncut"] == pytest.approx(1.5)  # the missed head has no change to count
    # the ratio is to the first estimator at the same cut
    assert s.loc[("b", 0.0), "ratio"] == pytest.approx(0.75 / 1.5)
    assert s.loc[("b", 0.2), "ratio"] == pytest.approx(1 / 7)
    assert s.loc[("a", 0.2), "ratio"] == pytest.approx(1.0)
    assert s.loc[("a", 0.2), "p95"] == pytest.approx(np.percentile([4.0, 10.0], 95))
    gb.plot(s.reset_index(), tmp_path / "border.png")
    assert (tmp_path / "border.png").stat().st_size > 10_000
