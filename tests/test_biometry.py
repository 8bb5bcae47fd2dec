"""biometry/: Hadlock GA <-> HC and the ellipse perimeter, against hand-computed values, published tables, the
complete elliptic integral (scipy) and a numerically integrated perimeter."""

from __future__ import annotations

import numpy as np
import pytest

from scipy.special import ellipe

from sonoshift.biometry import hadlock
from sonoshift.biometry.ellipse import ellipse_axes_from_circumference, ellipse_perimeter
from sonoshift.biometry.hadlock import ga_from_hc


def test_hadlock_hand_computed_values() -> None:
    # HC = 20 cm: 8.96 + 10.8 + 0.0003 * 8000 = 22.16 weeks
    assert ga_from_hc(200.0) == pytest.approx(22.16)
    # HC = 10 cm: 8.96 + 5.4 + 0.3 = 14.66 weeks
    assert ga_from_hc(100.0) == pytest.approx(14.66)
    # HC = 33.1 cm: 8.96 + 17.874 + 0.0003 * 36264.691 = 37.7134...
    assert ga_from_hc(331.0) == pytest.approx(8.96 + 17.874 + 0.0003 * 33.1**3)


def test_hadlock_vectorized_and_increasing() -> None:
    hc = np.array([50.0, 150.0, 300.0])
    ga = ga_from_hc(hc)
    assert ga.shape == (3,)
    assert np.all(np.diff(ga) > 0)
    np.testing.assert_allclose(ga[1], 8.96 + 0.54 * 15 + 0.0003 * 15**3)


@pytest.mark.parametrize("ga", [16.0, 20.0, 26.0, 32.0, 38.0])
def test_hc_curve_inverts_the_hadlock_ga_formula(ga: float) -> None:
    # Independent reference: DESIGN.md's GA-from-HC (GA = 8.96 + 0.540 HC + 0.0003 HC^3, HC in cm).
    hc = hadlock.head_circumference_cm(ga)
    ga_back = 8.96 + 0.540 * hc + 0.0003 * hc**3
    # Two separate regressions (size on age, age on size): they agree within 1.5 weeks (their 2 SD is 1-3 weeks).
    assert abs(ga_back - ga) < 1.5


def test_published_values_at_20_and_40_weeks() -> None:
    # Hadlock 1984 tables: HC ~17.5 / ~34.5 cm, AC ~15 / ~35 cm, FL ~3.3 / ~7.7 cm, BPD ~4.7 / ~9.3 cm.
    assert hadlock.head_circumference_cm(20) == pytest.approx(17.7, abs=0.4)
    assert hadlock.head_circumference_cm(40) == pytest.approx(34.6, abs=0.6)
    assert hadlock.abdominal_circumference_cm(20) == pytest.approx(14.9, abs=0.4)
    assert hadlock.abdominal_circumference_cm(40) == pytest.approx(35.1, abs=0.6)
    assert hadlock.femur_length_cm(20) == pytest.approx(3.27, abs=0.1)
    assert hadlock.femur_length_cm(40) == pytest.approx(7.7, abs=0.2)
    assert hadlock.biparietal_diameter_cm(20) == pytest.approx(4.6, abs=0.2)
    ga = np.linspace(14, 41, 50)
    for f in (hadlock.head_circumference_cm, hadlock.abdominal_circumference_cm, hadlock.femur_length_cm):
        assert np.all(np.diff([f(g) for g in ga]) > 0)


@pytest.mark.parametrize("ratio", [0.6, 0.8, 1.0])
def test_ellipse_axes_reproduce_the_perimeter(ratio: float) -> None:
    a, b = ellipse_axes_from_circumference(30.0, ratio)
    t = np.linspace(0, 2 * np.pi, 200001)
    perimeter = np.sum(np.hypot(np.diff(a * np.cos(t)), np.diff(b * np.sin(t))))
    assert b / a == pytest.approx(ratio)
    assert perimeter == pytest.approx(30.0, rel=1e-4)


def test_ellipse_perimeter_matches_elliptic_integral() -> None:
    for a, b in [(5, 5), (80, 40), (100, 10), (3, 2.5)]:
        exact = 4 * a * ellipe(1 - (b / a) ** 2)  # scipy's parameter m = k^2 = 1 - (b/a)^2
        assert ellipse_perimeter(a, b) == pytest.approx(exact, rel=1e-4)
    assert ellipse_perimeter(7.0, 7.0) == pytest.approx(2 * np.pi * 7.0, rel=1e-12)
