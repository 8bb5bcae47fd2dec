"""The start images of image-guided candidates (``loop.init_strength`` > 0; SDEdit in synth/pipeline.py).

Each candidate starts from an image of the generator's unlabelled pool (the training patients whose labels the
regime does not keep, and data.unlabelled_path's images): a seeded draw, without replacement while the pool
lasts, so that the candidates carry the layouts (anatomy size, pose, depth) of patients the labelled frames do not
show. With ``loop.init_match`` a candidate of plane p is drawn among the pool images that the frozen plane critic
(fitted on the regime's labels only) finds most likely to be plane p, so the start already shows that plane and
the condition has less to redraw; a plane the critic gives no pool image draws from the whole pool. No label of
the pool is read.
"""

from __future__ import annotations

import numpy as np
import torch

from sonoshift.difusal.data import Frames
from sonoshift.errors import SonoshiftError


def draw_starts(pool: Frames, planes: np.ndarray, seed: int, probs: np.ndarray | None = None
                ) -> tuple[torch.Tensor, np.ndarray]:
    """Start images (N, 1, S, S) for candidates of plane ids ``planes`` (N,) and their indices in ``pool``.
    ``probs`` (len(pool), C): the critic's plane probabilities of the pool images (None: any image for any
    plane)."""
    if not len(pool):
        raise SonoshiftError("loop.init_strength > 0 needs unlabelled images to start candidates from, and the "
                             "regime has none.")
    rng = np.random.default_rng(seed)
    planes = np.asarray(planes, dtype=np.int64)
    idx = np.empty(len(planes), dtype=np.int64)
    best = None if probs is None else np.asarray(probs).argmax(axis=1)
    groups = [np.arange(len(planes))] if best is None else [np.flatnonzero(planes == p) for p in np.unique(planes)]
    for members in groups:
        where = np.arange(len(pool)) if best is None else np.flatnonzero(best == planes[members[0]])
        if not len(where):
            where = np.arange(len(pool))
        idx[members] = where[rng.choice(len(where), len(members), replace=len(where) < len(members))]
    return pool.x[torch.from_numpy(idx)], idx


__all__ = ["draw_starts"]
