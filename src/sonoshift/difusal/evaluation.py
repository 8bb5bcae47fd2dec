"""Scores of the downstream models on the test split (which no critic, generator or selection step sees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoshift.difusal.data import Frames
from sonoshift.difusal.downstream import Models, ga_of, plane_probs
from sonoshift.difusal.intervals import save_predictions
from sonoshift.judges.plane.scores import accuracy, confusion, macro_f1


def evaluate(models: Models | list[Models], test: Frames, n_classes: int, head: int,
             predictions: Path | None = None) -> dict[str, float]:
    """accuracy, macro_f1 (mean over classes present in truth or prediction), per-class recall and
    ga_mae_days (|GA estimate - true GA| on the test head frames with a known GA, in days; NaN without an
    estimator). A list of models (the same recipe trained with different seeds) gives the mean of every score
    over the seeds, plus ``macro_f1_sd`` / ``ga_mae_days_sd`` (their standard deviation over seeds) and
    ``n_seeds``. With ``predictions`` the per-frame predictions of every seed are written there (intervals.py)."""
    if isinstance(models, list):
        runs = [_evaluate_one(m, test, n_classes, head) for m in models]
        out = {k: float(np.mean([r[0][k] for r in runs])) for k in runs[0][0]}
        out["n_test"] = int(len(test))
        for k in ("macro_f1", "ga_mae_days"):
            out[f"{k}_sd"] = float(np.std([r[0][k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0
        out["n_seeds"] = len(runs)
        if predictions is not None:
            save_predictions(predictions, test.y, np.stack([r[1] for r in runs]), test.ga,
                             np.stack([r[2] for r in runs]), test.patients)
        return out
    out, pred, ga_est = _evaluate_one(models, test, n_classes, head)
    if predictions is not None:
        save_predictions(predictions, test.y, pred, test.ga, ga_est, test.patients)
    return out


def _evaluate_one(models: Models, test: Frames, n_classes: int, head: int
                  ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    pred = plane_probs(models.plane, test.x).argmax(1)
    cm = confusion(test.y, pred, n_classes)
    out = {"accuracy": accuracy(cm), "macro_f1": macro_f1(cm), "n_test": int(len(test))}
    for c in range(n_classes):
        out[f"recall_{c}"] = float(cm[c, c] / cm[c].sum()) if cm[c].sum() else float("nan")
    m = (test.y == head) & np.isfinite(test.ga)
    ga = ga_of(models.ga, test.x[np.flatnonzero(m)]) if m.any() else np.zeros(0)
    out["ga_mae_days"] = float(np.mean(np.abs(ga - test.ga[m])) * 7.0) if m.any() and models.ga is not None else float("nan")
    ga_est = np.full(len(test), np.nan)
    ga_est[np.flatnonzero(m)] = ga
    return out, pred, ga_est


__all__ = ["evaluate"]
