"""Bootstrap confidence intervals over patients (the unit that was sampled), for every table of results.

Frames of one patient are correlated; resampling frames would pretend there are hundreds of independent samples
when there are a handful of patients. ``patient_bootstrap`` resamples patients with replacement and recomputes
the frame-weighted mean over the resampled patients' frames (a cluster bootstrap; percentile interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """mean over all frames, percentile interval [low, high] at ``level``, number of patients resampled."""

    mean: float
    low: float
    high: float
    level: float
    patients: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def patient_bootstrap(
    values: Sequence[float] | np.ndarray,
    patients: Sequence[str] | np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` (one per frame; NaN frames are ignored) with a patient-level bootstrap interval.

    ``patients``: the patient id of each frame. Each replicate draws as many patients as there are, with
    replacement, and takes the mean over all their frames. With one patient the interval is [mean, mean].
    """
    v = np.asarray(values, dtype=np.float64)
    p = np.asarray(patients)
    if v.shape != p.shape:
        raise ValueError(f"values and patients must have the same length, got {v.shape} and {p.shape}")
    return patient_bootstrap_ratio(v, np.ones_like(v), p, n_boot=n_boot, level=level, seed=seed)  # mean = sum / count


def patient_bootstrap_ratio(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    patients: Sequence[str] | np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """sum(numerator) / sum(denominator) over all frames (e.g. the share of a Dice gap recovered: per-frame gains
    over per-frame gaps) with a patient-level bootstrap interval of the same ratio (each replicate draws as many
    patients as there are, with replacement). Frames where either value is NaN are ignored."""
    a, b = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    p = np.asarray(patients)
    if not a.shape == b.shape == p.shape:
        raise ValueError(f"numerator, denominator and patients must have the same length, got {a.shape}, {b.shape}"
                         f" and {p.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b, p = a[ok], b[ok], p[ok]
    if a.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), level, 0)
    ids, inverse = np.unique(p, return_inverse=True)
    sa, sb = np.bincount(inverse, weights=a), np.bincount(inverse, weights=b)
    ratio = float(sa.sum() / sb.sum())
    if len(ids) == 1:
        return Interval(ratio, ratio, ratio, level, 1)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    boot = sa[draws].sum(axis=1) / sb[draws].sum(axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(ratio, float(lo), float(hi), level, len(ids))
