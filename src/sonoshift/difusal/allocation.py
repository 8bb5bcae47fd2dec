"""Spend a generation budget over conditions (pure numpy).

``allocate``: every condition gets ``floor`` candidates; the rest of the budget goes in proportion to the
weakness (uniformly when all weaknesses are 0), rounded by largest remainder (ties to the lower index), so the
counts always sum to the budget. ``uniform``: the same budget split evenly (the arm that shows what the active
allocation adds).
"""

from __future__ import annotations

import numpy as np

from sonoshift.errors import SonoshiftError


def _largest_remainder(share: np.ndarray, total: int) -> np.ndarray:
    base = np.floor(share).astype(np.int64)
    left = total - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")
    base[order[:left]] += 1
    return base


def allocate(weakness: np.ndarray, budget: int, floor: int) -> np.ndarray:
    """Candidates per condition (same shape as ``weakness``, int, summing to ``budget``)."""
    w = np.asarray(weakness, np.float64)
    flat = np.clip(w.ravel(), 0, None)
    n = flat.size
    if floor * n > budget:
        raise SonoshiftError(f"the budget {budget} cannot give {floor} candidates to each of {n} conditions.")
    rest = budget - floor * n
    p = flat / flat.sum() if flat.sum() > 0 else np.full(n, 1.0 / n)
    return (floor + _largest_remainder(p * rest, rest)).reshape(w.shape)


def uniform(shape: tuple[int, ...], budget: int) -> np.ndarray:
    """``budget`` split evenly over ``shape`` conditions (the first ones get the remainder)."""
    return allocate(np.zeros(shape), budget, 0)


__all__ = ["allocate", "uniform"]
