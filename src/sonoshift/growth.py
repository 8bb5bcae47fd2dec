"""Fetal growth formulas (pure functions, no I/O)."""

from __future__ import annotations

import numpy as np


def hadlock_ga_from_hc(hc_mm):
    """Gestational age in weeks from head circumference (Hadlock 1984).

    GA = 8.96 + 0.540 HC + 0.0003 HC^3 with HC in centimetres. Input: HC in millimetres (float, array or
    tensor-like accepted by numpy); output: GA in weeks, same shape (float). Valid roughly for HC 5-35 cm.
    """
    hc_cm = np.asarray(hc_mm, dtype=np.float64) / 10.0
    ga = 8.96 + 0.540 * hc_cm + 0.0003 * hc_cm**3
    return float(ga) if ga.ndim == 0 else ga
