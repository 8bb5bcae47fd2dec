"""Adapt a trained plane classifier to a new scanner or centre from unlabelled frames alone (AdaBN).

Li Y. et al., "Revisiting batch normalization for practical domain adaptation" (ICLR workshop 2017): a network's
BatchNorm layers normalize each channel with the mean and variance of the training images; on another scanner
those statistics are wrong (brighter or darker frames, other speckle, other zoom), so every layer after the first
sees shifted inputs. AdaBN keeps every learned weight and re-estimates only the BatchNorm running mean and
variance on frames of the new domain. It needs no label, no gradient and no translator: a clinic collects a few
dozen unlabelled frames from its own probe and the classifier is re-normalized for them. Spain -> Africa
(docs/judges.md) measures what it buys.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.checkpoint import PlaneClassifier, load_classifier, save_classifier
from sonoshift.judges.plane.data import to_input
from sonoshift.judges.plane.zoom import zoom_ensemble

MIN_FRAMES = 8  # fewer frames give BatchNorm statistics of a handful of images, not of a domain


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running mean / variance are those of the features of ``x`` (N, C, H, W)
    over the whole set; every other weight is unchanged; returned in eval mode.

    Exact and independent of ``batch_size``: the norms are re-estimated one after the other, in network order,
    each from the features it receives once every earlier norm uses its new statistics (a norm in training mode
    would instead pass on features normalized by each batch's own statistics)."""
    if len(x) < MIN_FRAMES:
        raise SonoshiftError(
            f"adapting a classifier needs at least {MIN_FRAMES} unlabelled frames of the new domain, got {len(x)}.")
    if not torch.isfinite(x).all():
        raise SonoshiftError("the frames to adapt on contain NaN or infinite values.")
    out = copy.deepcopy(model).eval()
    norms = [m for m in out.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise SonoshiftError("this network has no BatchNorm layer to adapt.")
    dev = next(out.parameters()).device
    for bn in norms:
        moments: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # per batch: values, sum, sum of squares
        hook = bn.register_forward_pre_hook(lambda _m, args, acc=moments: acc.append(_moments(args[0])))
        for i in range(0, len(x), batch_size):
            out(x[i : i + batch_size].to(dev))
        hook.remove()
        n, s, ss = (sum(t) for t in zip(*moments))
        mean = s / n
        var = (ss / n - mean * mean).clamp_min(0) * n / (n - 1)  # unbiased, as BatchNorm stores it
        bn.running_mean.copy_(mean.to(bn.running_mean))
        bn.running_var.copy_(var.to(bn.running_var))
        bn.num_batches_tracked.zero_()
    return out


def _moments(h: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(values per channel, per-channel sum, per-channel sum of squares) of features (B, C, ...), in float64."""
    h = h.double().transpose(0, 1).reshape(h.shape[1], -1)
    return h.shape[1], h.sum(1), (h * h).sum(1)


def adapt_classifier(clf: PlaneClassifier, frames: np.ndarray, source: str) -> PlaneClassifier:
    """``clf`` re-normalized on ``frames`` (N, S, S) uint8 at the classifier's size; ``info["adapted"]`` records
    how (method, frame count, where the frames came from)."""
    model = recompute_batchnorm(clf.model, to_input(frames))
    info = {**clf.info, "adapted": {"method": "AdaBN (BatchNorm statistics re-estimated, no label used)",
                                    "frames": int(len(frames)), "source": source}}
    return PlaneClassifier(model=model, classes=clf.classes, image_size=clf.image_size, label=clf.label,
                           config=clf.config, info=info)


def zoom_classifier(clf: PlaneClassifier, zooms: Sequence[float], frames: np.ndarray | None = None,
                    source: str = "") -> PlaneClassifier:
    """``clf`` as a test-time zoom ensemble (zoom.py); with ``frames`` (N, S, S) uint8 of the new domain, each
    zoom's copy re-normalized on them zoomed alike (``info["adapted"]`` records how)."""
    model = zoom_ensemble(clf.model, zooms, frames)  # checks the zooms and refuses a nested ensemble
    info = {**clf.info, "zooms": list(model.zooms)}
    if frames is not None:
        info["adapted"] = {"method": "AdaBN per zoom (BatchNorm statistics re-estimated, no label used)",
                           "frames": int(len(frames)), "source": source, "zooms": list(model.zooms)}
    return PlaneClassifier(model=model, classes=clf.classes, image_size=clf.image_size, label=clf.label,
                           config=clf.config, info=info)


def adapt_files(
    classifier: str | Path, inputs: Sequence[str | Path], out: str | Path, *, crop: bool = True,
    progress: bool = True, zooms: Sequence[float] | None = None,
) -> PlaneClassifier:
    """Adapt the classifier at ``classifier`` on unlabelled image files (and the images in folders, recursively),
    each put in the training geometry as ``predict`` does; write the adapted classifier to ``out``. With
    ``zooms``, a test-time zoom ensemble re-normalized at each zoom (zoom.py)."""
    from sonoshift.data.frame_inputs import list_frames
    from sonoshift.judges.plane.api import read_like_training

    if Path(out).resolve() == Path(classifier).resolve():
        raise SonoshiftError(f"the adapted classifier would overwrite {classifier}: choose another --out folder.")
    clf = load_classifier(classifier)
    frames = read_like_training(list_frames(inputs, recursive=True), clf.image_size, crop, progress)
    source = ", ".join(str(p) for p in inputs)
    adapted = adapt_classifier(clf, frames, source) if zooms is None else zoom_classifier(clf, zooms, frames, source)
    save_classifier(adapted, out)
    return adapted


__all__ = ["MIN_FRAMES", "adapt_classifier", "adapt_files", "recompute_batchnorm", "zoom_classifier"]
