"""The histogram anchor of the diffusion translators: x_0 = hm(source) + a zero-initialized correction.

With ``anchor: histogram_match`` the residual generator's base image is the source frame histogram-matched to the
target domain (the no-learning baseline of ``sonoshift.baselines.histogram_match``) instead of the source frame
(DDGAN) or the CycleGAN output (cascade). An untrained translator then returns exactly the histogram-matched
frame, and training can only add a correction to it. The target histogram is pooled from the training split's
target frames when the run is built and stored in the checkpoint metadata, so a translator rebuilds it.

Condition layout (the generator's input is ``cat[x_t, condition]``; the residual adds the first condition
channel): DDGAN ``[hm(y)]``; cascade ``[hm(y), G_ab(y)]`` (``generator.in_channels: 3``), where y is the
synthetic source G_{T->S}(x_0) in training and the real source frame at inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sonoshift.baselines.histogram_match import HistogramMatch, reference_from_frames
from sonoshift.errors import SonoshiftError

ANCHORS: tuple[str, ...] = ("condition", "histogram_match")


def fit_anchor(dataset: Any, source: str, target: str, max_frames: int = 2000, key: str = "target") -> HistogramMatch:
    """The histogram anchor fitted on a training dataset (items {"target": (1, H, W) in [-1, 1]}): the pooled
    grey-level histogram of up to ``max_frames`` evenly spaced target frames, quantized to uint8 levels as the
    harmonize command writes them. ``key="source"``: pooled from the items' source frames (the anchor of a
    target -> source generator, e.g. an anchored CycleGAN's G_ba)."""
    n = len(dataset)
    if n == 0:
        raise SonoshiftError("the histogram anchor needs target training frames, and the dataset is empty.")
    idx = np.linspace(0, n - 1, min(n, max_frames)).round().astype(int)
    frames = np.stack([
        ((dataset[int(i)][key][0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        for i in idx
    ])
    levels, quantiles = reference_from_frames(frames)
    return HistogramMatch(levels, quantiles, source, target, tuple(int(s) for s in frames.shape[-2:]))


def anchor_metadata(hm: HistogramMatch | None) -> dict[str, Any] | None:
    """What the checkpoint stores to rebuild the anchor (None for ``anchor: condition``)."""
    if hm is None:
        return None
    return {"kind": "histogram_match", "levels": list(hm.levels), "quantiles": list(hm.quantiles)}


def anchor_from_metadata(meta: dict[str, Any] | None, source: str, target: str,
                         size: tuple[int, int]) -> HistogramMatch | None:
    """The anchor of a checkpoint's metadata entry ``anchor`` (None when the run had none)."""
    if not meta:
        return None
    if meta.get("kind") != "histogram_match":
        raise SonoshiftError(f"unknown translator anchor {meta.get('kind')!r} in the checkpoint metadata.")
    return HistogramMatch(tuple(meta["levels"]), tuple(meta["quantiles"]), source, target, size)


def anchored_condition(hm: HistogramMatch | None, source: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """The generator's condition from the source frame (B, 1, H, W) and ``base``, the CycleGAN output for the
    cascade or None for the DDGAN. No anchor: ``base``, or the source when there is none. Histogram anchor:
    hm(source), followed by ``base`` as a second channel when there is one."""
    if hm is None:
        return source if base is None else base
    with torch.no_grad():
        a = hm(source)
    return a if base is None else torch.cat([a, base], dim=1)


__all__ = ["ANCHORS", "anchor_from_metadata", "anchor_metadata", "anchored_condition", "fit_anchor"]
