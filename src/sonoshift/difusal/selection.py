"""Keep the hard-but-valid candidates and say why every other one was rejected (pure pandas).

Validity comes from the frozen critics, hardness from the CURRENT downstream models (different models, or
"valid" and "not easy" would cancel out). The first failing check, in this order, is the reason:
near_copy (memorization guard), unrealistic (realism kNN distance), wrong_plane (critic confidence),
ga_inconsistent (head GA outside the INTERGROWTH-21st band), too_easy (the current classifier already gives
the plane more than ``easy_conf`` and, for heads, its GA is within ``ga_hard_weeks``). Otherwise "accepted", unless the plane already has ``per_plane_cap`` accepted candidates this
round ("over_quota": the hardest ones, lowest current-classifier confidence, are kept), so that one plane cannot
make up the whole accepted set and shift what the downstream models learn for that class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REASONS = ("near_copy", "unrealistic", "wrong_plane", "ga_inconsistent", "too_easy", "over_quota")


def too_easy(down_conf: np.ndarray, down_ga_err: np.ndarray, easy_conf: float, ga_hard_weeks: float) -> np.ndarray:
    """True where the current models find the candidate easy (a NaN GA error counts as easy on GA)."""
    ga_hard = np.nan_to_num(np.abs(np.asarray(down_ga_err, np.float64)), nan=0.0) > ga_hard_weeks
    return (np.asarray(down_conf) > easy_conf) & ~ga_hard


def select(scores: pd.DataFrame, easy_conf: float, ga_hard_weeks: float, plane_ids: np.ndarray | None = None,
           per_plane_cap: int = 0) -> pd.DataFrame:
    """``scores`` with columns near_copy, realism_ok, critic_plane_ok, ga_ok, down_conf, down_ga_err ->
    a copy with ``too_easy``, ``reason`` and ``accepted`` added. ``per_plane_cap`` > 0 (with ``plane_ids``, the
    conditioned plane of every row): at most that many accepted per plane, the rest "over_quota"."""
    out = scores.copy()
    out["too_easy"] = too_easy(out["down_conf"].to_numpy(), out["down_ga_err"].to_numpy(), easy_conf, ga_hard_weeks)
    fails = [out["near_copy"].to_numpy(bool), ~out["realism_ok"].to_numpy(bool),
             ~out["critic_plane_ok"].to_numpy(bool), ~out["ga_ok"].to_numpy(bool), out["too_easy"].to_numpy(bool)]
    reason = np.full(len(out), "accepted", dtype=object)
    for name, f in reversed(list(zip(REASONS, fails))):
        reason[f] = name
    if per_plane_cap > 0 and plane_ids is not None:
        conf = out["down_conf"].to_numpy(np.float64)
        for p in np.unique(plane_ids):
            ok = np.flatnonzero((np.asarray(plane_ids) == p) & (reason == "accepted"))
            reason[ok[np.argsort(conf[ok], kind="stable")][per_plane_cap:]] = "over_quota"
    out["reason"] = reason
    out["accepted"] = reason == "accepted"
    return out


__all__ = ["REASONS", "select", "too_easy"]
