"""Where the downstream models are weakest (pure numpy).

Per plane p (validation frames of plane p): error = 1 - recall; entropy = mean predictive entropy divided by
log(number of classes) (0 = certain, 1 = uniform; 0 in a one-plane study). Per GA bin b (validation head frames
whose true GA falls in b): GA error = mean |predicted - true| in weeks, divided by the bin width (so ~1 means "off by a whole bin").
Condition (p, b): plane_error[p] + entropy_weight * plane_entropy[p], plus the GA-bin term for the head plane
(the only plane whose GA the estimator reads). A plane with no validation frame counts as weakest (error 1,
entropy 1: nothing shows the model knows it); a GA bin with no validation head frame scores 0.
"""

from __future__ import annotations

import numpy as np


def plane_weakness(probs: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """probs (N, C) softmax, y (N,) true ids -> (error (C,), normalised entropy (C,)); (1, 1) for a class
    without frames."""
    probs = np.asarray(probs, np.float64)
    pred = probs.argmax(1)
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)
    ent = ent / np.log(n_classes) if n_classes > 1 else np.zeros_like(ent)  # one class: nothing is uncertain
    err, h = np.ones(n_classes), np.ones(n_classes)
    for c in range(n_classes):
        m = y == c
        if m.any():
            err[c] = float((pred[m] != c).mean())
            h[c] = float(ent[m].mean())
    return err, h


def bin_index(ga: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """GA weeks -> bin id in [0, len(edges) - 2]; values outside the edges go to the first / last bin."""
    return np.clip(np.searchsorted(np.asarray(edges), ga, side="right") - 1, 0, len(edges) - 2)


def ga_weakness(ga_true: np.ndarray, ga_pred: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Mean |error| per GA bin over the bin width (n_bins,); frames with unknown GA are ignored."""
    ga_true, ga_pred = np.asarray(ga_true, np.float64), np.asarray(ga_pred, np.float64)
    ok = np.isfinite(ga_true) & np.isfinite(ga_pred)
    b = bin_index(ga_true[ok], edges)
    widths = np.diff(np.asarray(edges, np.float64))
    out = np.zeros(len(widths))
    err = np.abs(ga_pred[ok] - ga_true[ok])
    for i in range(len(widths)):
        if (b == i).any():
            out[i] = float(err[b == i].mean() / widths[i])
    return out


def condition_weakness(plane_err: np.ndarray, plane_ent: np.ndarray, ga_bin: np.ndarray, head: int,
                       entropy_weight: float) -> np.ndarray:
    """(n_planes, n_bins) weakness of every (plane, GA bin) condition (see the module docstring)."""
    w = (plane_err + entropy_weight * plane_ent)[:, None] + np.zeros((1, len(ga_bin)))
    w[head] += ga_bin
    return w


__all__ = ["bin_index", "condition_weakness", "ga_weakness", "plane_weakness"]
