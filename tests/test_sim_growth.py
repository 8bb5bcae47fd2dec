"""The phantom sizes that follow the Hadlock growth curves (the curves themselves: test_biometry.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonoshift.biometry import hadlock
from sonoshift.biometry.ellipse import ellipse_axes_from_circumference
from sonoshift.sim.phantom import build_phantom
from sonoshift.sim.primitives import Plane
from sonoshift.sim.tissues import LABEL


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
    hc = hadlock.head_circumference_cm(ga)
    a_ax, b_ax = ellipse_axes_from_circumference(hc, 0.8)
    assert inside.any() and np.linalg.norm(skull_center - skull.center) < 1.0
    assert area == pytest.approx(math.pi * a_ax * b_ax, rel=0.03)
