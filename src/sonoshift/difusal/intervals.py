"""95% intervals for the headline measures by a patient-cluster bootstrap of the test split.

Test frames of one patient are not independent (neighbouring cine frames, one GA per patient), so the bootstrap
resamples test PATIENTS with replacement and takes all their frames. The same resamples serve every stage of a
regime, so the difference between two arms is a paired comparison (``paired_difference``): the interval of
macro-F1(arm A) - macro-F1(arm B) over resamples, not two overlapping single intervals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoshift.judges.plane.scores import confusion, macro_f1


def save_predictions(path: Path, y: np.ndarray, pred: np.ndarray, ga: np.ndarray, ga_est: np.ndarray,
                     patients: np.ndarray) -> None:
    """Per test frame: true and predicted plane id, true GA and the GA estimate (weeks; NaN off the head plane
    or without an estimator), and the patient. ``pred`` and ``ga_est`` may be (seeds, N): one row per training
    seed of the downstream models."""
    np.savez_compressed(path, y=y, pred=pred, ga=ga, ga_est=ga_est, patients=np.asarray(patients, dtype=str))


def resamples(patients: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``n`` index sets of a patient-cluster bootstrap (each: the frames of patients drawn with replacement)."""
    ids, inv = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    members = [np.flatnonzero(inv == i) for i in range(len(ids))]
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[j] for j in rng.integers(0, len(ids), len(ids))]) for _ in range(n)]


def measures(p: dict[str, np.ndarray], idx: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(macro-F1, GA MAE in days) on the frames ``idx`` of predictions ``p``; predictions of several training
    seeds (``pred`` and ``ga_est`` of shape (seeds, N)) give the mean of each measure over the seeds."""
    pred, ga_est = np.atleast_2d(p["pred"]), np.atleast_2d(p["ga_est"])
    f1s, maes = [], []
    for s in range(pred.shape[0]):
        f1s.append(macro_f1(confusion(p["y"][idx], pred[s][idx], n_classes)))
        e = np.abs(ga_est[s][idx] - p["ga"][idx])
        e = e[np.isfinite(e)]
        maes.append(float(e.mean() * 7.0) if len(e) else float("nan"))
    return float(np.mean(f1s)), float(np.mean(maes))


def accuracy_on(p: dict[str, np.ndarray], idx: np.ndarray) -> float:
    """Accuracy on the frames ``idx`` (mean over the training seeds' rows of ``pred``)."""
    pred = np.atleast_2d(p["pred"])
    return float(np.mean([(pred[s][idx] == p["y"][idx]).mean() for s in range(pred.shape[0])]))


def bootstrap(p: dict[str, np.ndarray], sets: list[np.ndarray], n_classes: int) -> np.ndarray:
    """(n_resamples, 3): macro-F1, GA MAE (days) and accuracy on every resample."""
    return np.array([(*measures(p, s, n_classes), accuracy_on(p, s)) for s in sets])


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles, ignoring NaN (NaN, NaN when nothing is finite)."""
    v = values[np.isfinite(values)]
    return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if len(v) else (float("nan"), float("nan"))


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path)
    return {k: z[k] for k in z.files}


__all__ = ["accuracy_on", "bootstrap", "interval", "load_predictions", "measures", "resamples", "save_predictions"]
