"""Hadlock growth curves and the phantom sizes that follow them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonoshift.sim import growth
from sonoshift.sim.phantom import build_phantom
from sonoshift.sim.primitives import Plane
from sonoshift.sim.tissues import LABEL


@pytest.mark.parametrize("ga", [16.0, 20.0, 26.0, 32.0, 38.0])
def test_hc_curve_inverts_the_hadlock_ga_formula(ga: float) -> None:
    # Independent reference: DESIGN.md's GA-from-HC (GA = 8.96 + 0.540 HC + 0.0003 HC^3, HC in cm).
    hc = growth.head_circumference_cm(ga)
    ga_back = 8.96 + 0.540 * hc + 0.0003 * hc**3
    # Two separate regressions (size on age, age on size): they agree within 1.5 weeks (their 2 SD is 1-3 weeks).
    assert abs(ga_back - ga) < 1.5


def test_published_values_at_20_and_40_weeks() -> None:
    # Hadlock 1984 tables: HC ~17.5 / ~34.5 cm, AC ~15 / ~35 cm, FL ~3.3 / ~7.7 cm, BPD ~4.7 / ~9.3 cm.
    assert growth.head_circumference_cm(20) == pytest.approx(17.7, abs=0.4)
    assert growth.head_circumference_cm(40) == pytest.approx(34.6, abs=0.6)
    assert growth.abdominal_circumference_cm(20) == pytest.approx(14.9, abs=0.4)
    assert growth.abdominal_circumference_cm(40) == pytest.approx(35.1, abs=0.6)
    assert growth.femur_length_cm(20) == pytest.approx(3.27, abs=0.1)
    assert growth.femur_length_cm(40) == pytest.approx(7.7, abs=0.2)
    assert growth.biparietal_diameter_cm(20) == pytest.approx(4.6, abs=0.2)
    ga = np.linspace(14, 41, 50)
    for f in (growth.head_circumference_cm, growth.abdominal_circumference_cm, growth.femur_length_cm):
        assert np.all(np.diff([f(g) for g in ga]) > 0)


@pytest.mark.parametrize("ratio", [0.6, 0.8, 1.0])
def test_ellipse_axes_reproduce_the_perimeter(ratio: float) -> None:
    a, b = growth.ellipse_axes_from_circumference(30.0, ratio)
    t = np.linspace(0, 2 * np.pi, 200001)
    perimeter = np.sum(np.hypot(np.diff(a * np.cos(t)), np.diff(b * np.sin(t))))
    assert b / a == pytest.approx(ratio)
    assert perimeter == pytest.approx(30.0, rel=1e-4)


@pytest.mark.parametrize("ga", [20.0, 34.0])
def test_phantom_head_section_has_the_hadlock_circumference(ga: float) -> None:
    """Slice the phantom's skull through the head centre, perpendicular to the fetal axis: perimeter = HC."""
    ph = build_phantom(ga, np.random.default_rng(3))
    a, b, c = ph.landmarks["fetal_frame"]
    skull_center = ph.landmarks["head_center"]
    # The skull ellipsoid is centred slightly anterior of the thalami landmark; find it among the shapes.
    skull = [s for s in ph.shapes if getattr(s, "label", None) == LABEL["skull"]][0]
    plane = Plane(skull.center - 20 * b - 20 * c, b, c)
    h = 0.04
    xs = np.arange(0, 40, h, dtype=np.float32)
    X, Y = np.meshgrid(xs, xs)
    labels = ph.slice(plane, X, Y)
    inside = labels != LABEL["maternal_wall"]
    skull_mask = np.isin(labels, [LABEL["skull"], LABEL["brain"], LABEL["thalami"],
                                                  LABEL["midline_falx"], LABEL["ventricles_csf"]])
    area = skull_mask.sum() * h * h
    hc = growth.head_circumference_cm(ga)
    a_ax, b_ax = growth.ellipse_axes_from_circumference(hc, 0.8)
    assert inside.any() and np.linalg.norm(skull_center - skull.center) < 1.0
    assert area == pytest.approx(math.pi * a_ax * b_ax, rel=0.03)
