"""The identity guard of the affine anchors: keep the source frames' grey levels when the two domains' training
frames differ no more than two halves of one domain do.

An affine anchor moves the source domain's pooled grey levels onto the target domain's. Where the two scanners
really differ (the simulator's cart and handheld probes: pooled Bhattacharyya coefficient 0.78 between domains,
1.00 between two samples of one domain) that is the right first step. Where they do not (the real studies in
docs/diffusion.md section 21: between domains 0.955-0.980, between two samples of one domain 0.958-0.985), the
fitted map only moves frames by the sampling noise of a few patients, and measurably away from the target on
held-out frames. The guard reads that from the training split alone (no validation frame):

- R random patient-wise half splits of each domain's training patients (a seeded generator);
- within: BC(S_a, S_b) and BC(T_a, T_b); between: BC(S_a, T_a) and BC(S_b, T_b), for every split (pooled
  256-bin histograms of the levels inside the field of view; halves of equal standing on both sides);
- the identity map is kept when the median between-domain BC reaches the lower quartile of the within-domain ones.

A domain with fewer than two training patients cannot be split: the fitted map is kept. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GUARD_SPLITS = 32  # random half splits per domain
GUARD_QUANTILE = 0.25  # the within-domain quantile the median between-domain BC must reach
BINS = 256


@dataclass(frozen=True)
class GapReading:
    """The BCs of the guard's half splits. ``identity``: the domains differ no more than halves of one domain."""

    between: tuple[float, ...]
    within: tuple[float, ...]

    @property
    def median_between(self) -> float:
        return float(np.median(self.between))

    @property
    def within_floor(self) -> float:
        return float(np.quantile(self.within, GUARD_QUANTILE))

    @property
    def identity(self) -> bool:
        return self.median_between >= self.within_floor

    def summary(self) -> str:
        return guard_note(self.as_dict())

    def as_dict(self) -> dict[str, float | bool]:
        return {"median_between": round(self.median_between, 6), "within_floor": round(self.within_floor, 6),
                "splits": len(self.between) // 2, "identity": self.identity}


def guard_note(reading: dict) -> str:
    """One sentence on a guard reading (``GapReading.as_dict``, as a checkpoint's anchor metadata stores it)."""
    verdict = ("identity kept: the domains' grey levels differ no more than two halves of one domain, so the "
               "translator keeps each frame's grey-level mean and spread" if reading["identity"] else
               "fitted map kept: the domains' grey levels differ")
    return (f"anchor guard: median between-domain BC {reading['median_between']:.4f}, within-domain lower quartile "
            f"{reading['within_floor']:.4f} ({reading['splits']} half splits of the training patients): {verdict}.")


def patient_histograms(frames: np.ndarray, fov: np.ndarray, patients: Sequence[str]) -> np.ndarray:
    """Pooled grey-level counts (P, 256) of uint8 frames (N, H, W) inside ``fov`` (N, H, W, > 0), one row per
    distinct patient of ``patients`` (N ids, in order of first appearance)."""
    ids = list(dict.fromkeys(patients))
    if len(patients) != len(frames):
        raise ValueError(f"{len(patients)} patient ids for {len(frames)} frames.")
    row = {p: i for i, p in enumerate(ids)}
    out = np.zeros((len(ids), BINS), dtype=np.float64)
    for k, p in enumerate(patients):
        f = np.asarray(frames[k])
        out[row[p]] += np.bincount(f[np.asarray(fov[k]) > 0].ravel(), minlength=BINS)[:BINS]
    return out


def _bc(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = a.sum(), b.sum()
    if na <= 0 or nb <= 0:
        return float("nan")
    return float(min(1.0, np.sqrt(a / na * b / nb).sum()))


def _halves(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(counts))
    k = len(counts) // 2
    return counts[order[:k]].sum(0), counts[order[k:]].sum(0)


def domain_gap(source: np.ndarray, target: np.ndarray, rng: np.random.Generator,
               splits: int = GUARD_SPLITS) -> GapReading | None:
    """The guard's reading from per-patient counts (P, 256) of the source and the target domain's training
    frames (:func:`patient_histograms`); None when a domain has fewer than two patients with field of view."""
    source, target = (c[c.sum(1) > 0] for c in (source, target))
    if len(source) < 2 or len(target) < 2:
        return None
    between, within = [], []
    for _ in range(splits):
        sa, sb = _halves(source, rng)
        ta, tb = _halves(target, rng)
        within += [_bc(sa, sb), _bc(ta, tb)]
        between += [_bc(sa, ta), _bc(sb, tb)]
    return GapReading(tuple(between), tuple(within))


__all__ = ["BINS", "GUARD_QUANTILE", "GUARD_SPLITS", "GapReading", "domain_gap", "guard_note", "patient_histograms"]
