"""Classification scores from integer labels and probabilities: accuracy, macro-F1, per-class recall,
confusion matrix and expected calibration error (ECE). Plain numpy, one definition used everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts (C, C) int64: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per class (C,), NaN for a class with no true sample."""
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in the truth or the predictions (scikit-learn's default label set);
    a class with no true and no predicted sample is left out, F1 = 0 when precision + recall = 0."""
    tp = np.diag(cm).astype(float)
    pred, true = cm.sum(0).astype(float), cm.sum(1).astype(float)
    present = (pred + true) > 0
    if not present.any():
        return float("nan")
    f1 = 2 * tp / np.maximum(pred + true, 1e-12)  # = 2PR / (P + R)
    return float(f1[present].mean())


def accuracy(cm: np.ndarray) -> float:
    """Share of samples on the diagonal (NaN when empty)."""
    n = cm.sum()
    return float(np.trace(cm) / n) if n else float("nan")


def expected_calibration_error(probs: np.ndarray, y_true: Sequence[int], bins: int = 15) -> float:
    """ECE with ``bins`` equal-width confidence bins over (0, 1]: sum over bins of |accuracy - mean confidence|
    weighted by the bin's share of samples. ``probs`` (N, C) rows summing to 1; confidence = max probability."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(float)
    # bin i holds confidences in (i/bins, (i+1)/bins]
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def summarize(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict:
    """accuracy, macro_f1, ece, n, recall_<class> (NaN when absent) and the confusion matrix (list of lists)."""
    probs = np.asarray(probs)
    y = np.asarray(y_true, dtype=np.int64)
    cm = confusion(y, probs.argmax(1) if len(y) else [], len(classes))
    rec = per_class_recall(cm)
    out = {"n": int(len(y)), "accuracy": accuracy(cm), "macro_f1": macro_f1(cm),
           "ece": expected_calibration_error(probs, y)}
    out.update({f"recall_{c}": float(r) for c, r in zip(classes, rec)})
    out["confusion"] = cm.tolist()
    return out
