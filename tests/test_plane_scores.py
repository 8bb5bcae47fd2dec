"""Classification scores against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from sonoshift.judges.plane.scores import (
    accuracy,
    confusion,
    expected_calibration_error,
    macro_f1,
    per_class_recall,
    summarize,
)


def test_confusion_rows_are_truth():
    cm = confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert accuracy(cm) == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class_recall(cm), [0.5, 1.0, 2 / 3])


def test_macro_f1_by_hand():
    # class 0: tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2; class 1: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3;
    # class 2: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 4/5
    cm = confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert macro_f1(cm) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)


def test_macro_f1_ignores_absent_class_but_counts_hallucinated():
    # class 2 never occurs nor is predicted: left out. Class 1 is only predicted (F1 0) and counts.
    cm = confusion([0, 0, 0], [0, 0, 1], 3)
    f1_0 = 2 * 2 / (2 * 2 + 1 + 0)  # tp 2, fn 1, fp 0
    assert macro_f1(cm) == pytest.approx((f1_0 + 0.0) / 2)


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = [0, 1, 1, 0]
    # 15 bins of width 1/15: conf 0.9 -> bin 13, 0.8 -> bin 11, 0.7 -> bin 10, 0.55 -> bin 8 (one sample each)
    # |acc - conf| = |1 - .9|, |0 - .8|, |1 - .7|, |0 - .55|; each weighted 1/4
    assert expected_calibration_error(probs, y) == pytest.approx((0.1 + 0.8 + 0.3 + 0.55) / 4)
    # two bins only: (0, .5] empty, (.5, 1] holds all: |acc 2/4 - mean conf .7375|
    assert expected_calibration_error(probs, y, bins=2) == pytest.approx(abs(0.5 - (0.9 + 0.8 + 0.7 + 0.55) / 4))


def test_ece_perfectly_calibrated_is_zero():
    probs = np.array([[1.0, 0.0]] * 5)
    assert expected_calibration_error(probs, [0] * 5) == 0.0


def test_summarize_names_recall_per_class():
    probs = np.eye(3)[[0, 1, 1]]
    s = summarize([0, 1, 2], probs, ("a", "b", "c"))
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["recall_a"] == 1.0 and s["recall_c"] == 0.0
    assert s["confusion"][2] == [0, 1, 0]
