"""Scores of the downstream models on the test split (which no critic, generator or selection step sees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoshift.difusal.data import Frames
from sonoshift.difusal.downstream import Models, ga_of, plane_probs
from sonoshift.difusal.intervals import save_predictions
from sonoshift.judges.plane.scores import accuracy, confusion, macro_f1


def evaluate(models: Models, test: Frames, n_classes: int, head: int, predictions: Path | None = None
             ) -> dict[str, float]:
    """accuracy, macro_f1 (mean over classes present in truth or prediction), per-class recall and
    ga_mae_days (|GA estimate - true GA| on the test head frames with a known GA, in days; NaN without an
    estimator). With ``predictions`` the per-frame predictions are written there (intervals.py)."""
    pred = plane_probs(models.plane, test.x).argmax(1)
    cm = confusion(test.y, pred, n_classes)
    out = {"accuracy": accuracy(cm), "macro_f1": macro_f1(cm), "n_test": int(len(test))}
    for c in range(n_classes):
        out[f"recall_{c}"] = float(cm[c, c] / cm[c].sum()) if cm[c].sum() else float("nan")
    m = (test.y == head) & np.isfinite(test.ga)
    ga = ga_of(models.ga, test.x[np.flatnonzero(m)]) if m.any() else np.zeros(0)
    out["ga_mae_days"] = float(np.mean(np.abs(ga - test.ga[m])) * 7.0) if m.any() and models.ga is not None else float("nan")
    if predictions is not None:
        ga_est = np.full(len(test), np.nan)
        ga_est[np.flatnonzero(m)] = ga
        save_predictions(predictions, test.y, pred, test.ga, ga_est, test.patients)
    return out


__all__ = ["evaluate"]
