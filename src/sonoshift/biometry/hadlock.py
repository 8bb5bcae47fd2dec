"""Hadlock fetal biometry (Hadlock et al., Radiology 1984;152:497-501): age from size and size from age.

Two kinds of regression, fitted separately in the source and therefore not exact inverses of each other (they
agree within about 1.5 weeks over 16-38 weeks, inside their 2 SD of 1-3 weeks):

- age on size: ``ga_from_hc`` (GA weeks = 8.96 + 0.540 HC + 0.0003 HC^3, HC in cm), used to date a measured head
  (HC18, the GA estimator);
- size on age: ``head_circumference_cm``, ``biparietal_diameter_cm``, ``abdominal_circumference_cm``,
  ``femur_length_cm`` (cm for GA in weeks, 12-42), used to size the simulator's fetus.
"""

from __future__ import annotations

import numpy as np


def ga_from_hc(hc_mm):
    """Gestational age in weeks from head circumference: GA = 8.96 + 0.540 HC + 0.0003 HC^3 with HC in cm.

    Input: HC in millimetres (float or array-like, as HC18 gives it); output: GA in weeks, a float for a scalar
    input, else an array of the same shape. Valid roughly for HC 5-35 cm.
    """
    hc_cm = np.asarray(hc_mm, dtype=np.float64) / 10.0
    ga = 8.96 + 0.540 * hc_cm + 0.0003 * hc_cm**3
    return float(ga) if ga.ndim == 0 else ga


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


__all__ = ["abdominal_circumference_cm", "biparietal_diameter_cm", "femur_length_cm", "ga_from_hc",
           "head_circumference_cm"]
