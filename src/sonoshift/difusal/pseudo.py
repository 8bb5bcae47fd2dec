"""Pseudo-labels for the generator's unlabelled frames (``generator.pseudo_label_conf``).

Semi-supervised, the generator trains on the other training patients' frames with the null plane token: they teach
it what ultrasound looks like, not what a femur looks like across patients, so its plane-conditioned samples stay
close to the few labelled patients. With ``pseudo_label_conf`` > 0, an unlabelled frame whose frozen plane critic
(fitted on the regime's labels only: label hygiene holds) gives one plane at least that probability is trained with
that plane's token instead; the background plane (``data.background_plane``, "none of the standard planes") is
never assigned, since a critic that is unsure says "other" (measured on the 60-patient simulator cohort at 10% of
the labels: 48-67% of the unlabelled frames got "other" at probability >= 0.5 with precision 0.27-0.31, the
standard planes at >= 0.8 with precision 0.47-1.0; docs/difusal.md, session 16).
The GA stays unknown (null token): the GA critic of a regime with a handful of patients knows a handful of GAs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sonoshift.difusal.data import Frames
from sonoshift.errors import SonoshiftError


def pseudo_label(frames: Frames, probs: np.ndarray, conf: float, exclude: Sequence[int] = ()) -> Frames:
    """``frames`` with plane id argmax(probs) where max(probs) >= ``conf`` and the argmax is not in ``exclude``,
    -1 (the null token) elsewhere; GA, images, patients, videos and domains unchanged. ``conf`` <= 0: unchanged
    (off). ``probs``: (N, planes), each row a distribution over the planes."""
    if conf <= 0 or not len(frames):
        return frames
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(frames):
        raise SonoshiftError(f"pseudo-labels need one row of plane probabilities per frame: got {probs.shape} for "
                             f"{len(frames)} frames.")
    best = probs.argmax(1)
    keep = (probs.max(1) >= conf) & ~np.isin(best, list(exclude))
    y = np.where(keep, best, -1).astype(np.int64)
    return Frames(frames.x, y, frames.ga, frames.patients, frames.videos, frames.domain)


def counts(frames: Frames, n_planes: int) -> list[int]:
    """Pseudo-labelled frames per plane (frames with id -1 are not counted)."""
    y = frames.y[frames.y >= 0]
    return np.bincount(y, minlength=n_planes).tolist()


__all__ = ["counts", "pseudo_label"]
