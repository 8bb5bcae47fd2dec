"""Condition fidelity: does a synthetic image show the plane and GA it was conditioned on?"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr


def macro_f1(true: np.ndarray, pred: np.ndarray, labels: np.ndarray | None = None) -> float:
    """Mean over ``labels`` (default: the values in ``true``) of the per-class F1 = 2 TP / (2 TP + FP + FN);
    a class with no true and no predicted sample is skipped."""
    true, pred = np.asarray(true), np.asarray(pred)
    labels = np.unique(true) if labels is None else np.asarray(labels)
    f1s = []
    for c in labels:
        tp = int(np.sum((true == c) & (pred == c)))
        fp = int(np.sum((true != c) & (pred == c)))
        fn = int(np.sum((true == c) & (pred != c)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def ga_agreement(pred: np.ndarray, cond: np.ndarray, *, n_shuffles: int = 200, seed: int = 0) -> dict[str, float]:
    """GA read off images (``pred``, weeks) against the conditioned GA (``cond``): MAE and Spearman rho, and the
    same against randomly permuted conditions (the GA-shuffled baseline: mean over ``n_shuffles`` seeded
    permutations). Returns {mae, spearman, mae_shuffled, spearman_shuffled, n}."""
    pred, cond = np.asarray(pred, np.float64), np.asarray(cond, np.float64)
    rng = np.random.default_rng(seed)
    maes, rhos = [], []
    for _ in range(n_shuffles):
        c = rng.permutation(cond)
        maes.append(np.mean(np.abs(pred - c)))
        rhos.append(spearmanr(pred, c).statistic)
    return {"mae": float(np.mean(np.abs(pred - cond))), "spearman": float(spearmanr(pred, cond).statistic),
            "mae_shuffled": float(np.mean(maes)), "spearman_shuffled": float(np.mean(rhos)), "n": int(len(pred))}


def plane_predictions(judges, images: torch.Tensor) -> np.ndarray:
    """The judges' plane name per image (argmax of the logits)."""
    idx = judges.plane_logits(images).argmax(1).numpy()
    return np.asarray([judges.planes[i] for i in idx])


__all__ = ["ga_agreement", "macro_f1", "plane_predictions"]
