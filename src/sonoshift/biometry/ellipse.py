"""Ellipse perimeter (Ramanujan's second approximation) and its inverse for a given axis ratio.

HC18 defines head circumference as the perimeter of the ellipse annotated on the head; the simulator sizes the
fetal skull so that its transthalamic section has the Hadlock HC as perimeter. Both use these two functions.
"""

from __future__ import annotations

import math


def ellipse_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a``, ``b`` (Ramanujan II; relative error < 1e-4 for b/a >= 0.5,
    exact 2 pi r for a circle): pi (a + b) (1 + 3h / (10 + sqrt(4 - 3h))), h = ((a - b) / (a + b))^2."""
    h = ((a - b) / (a + b)) ** 2 if a + b > 0 else 0.0
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def ellipse_axes_from_circumference(circumference: float, ratio: float) -> tuple[float, float]:
    """Semi-axes (a, b), a >= b, of the ellipse with perimeter ``circumference`` and b/a = ``ratio`` (0-1]."""
    a = circumference / ellipse_perimeter(1.0, ratio)
    return a, a * ratio


__all__ = ["ellipse_axes_from_circumference", "ellipse_perimeter"]
