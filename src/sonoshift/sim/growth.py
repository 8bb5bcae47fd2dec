"""Fetal biometry as a function of gestational age (Hadlock et al., Radiology 1984;152:497-501).

The regressions of measurement on menstrual age, in cm for GA in weeks. They hold from about 12 to 42 weeks.
"""

from __future__ import annotations

import math


def head_circumference_cm(ga_weeks: float) -> float:
    """Head circumference HC (cm) at gestational age ``ga_weeks`` (weeks, 12-42)."""
    return -11.48 + 1.56 * ga_weeks - 0.0002548 * ga_weeks**3


def biparietal_diameter_cm(ga_weeks: float) -> float:
    """Biparietal diameter BPD (cm) at gestational age ``ga_weeks`` (weeks, 12-42)."""
    return -3.08 + 0.41 * ga_weeks - 0.000061 * ga_weeks**3


def abdominal_circumference_cm(ga_weeks: float) -> float:
    """Abdominal circumference AC (cm) at gestational age ``ga_weeks`` (weeks, 12-42)."""
    return -13.3 + 1.61 * ga_weeks - 0.00998 * ga_weeks**2


def femur_length_cm(ga_weeks: float) -> float:
    """Femur length FL (cm) at gestational age ``ga_weeks`` (weeks, 12-42)."""
    return -3.91 + 0.427 * ga_weeks - 0.0034 * ga_weeks**2


def ellipse_axes_from_circumference(circumference: float, ratio: float) -> tuple[float, float]:
    """Semi-axes (a, b), a >= b, of an ellipse with the given perimeter and b/a = ``ratio`` (0-1].

    Uses Ramanujan's perimeter approximation (relative error < 1e-4 for ratio >= 0.5).
    """
    h = ((1 - ratio) / (1 + ratio)) ** 2
    unit = math.pi * (1 + ratio) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    a = circumference / unit
    return a, a * ratio
