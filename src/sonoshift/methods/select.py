"""Which checkpoint of a residual diffusion translator to use, chosen without ground truth (issue 12).

A harmonizer may change grey levels, not anatomy. The anchored translators (``x_0 = anchor + correction``) start as
their anchor and, trained long enough on 2 CPU cores, begin to move structure: once the correction stops being a
brightness change, their outputs lose local correlation with their own anchor and the simulator ground truth
punishes it (docs/diffusion.md §13-14). So after training, each kept checkpoint translates the validation split's
source frames, and ``structure_kept`` = mean LNCC (9x9 windows, inside the field of view) between each output and
its anchor image; the run uses the **last** checkpoint whose value is at least ``select_floor``, or the first
checkpoint when none is. No label or ground truth is read: only source frames of the validation split.

LNCC does not see a global grey-level shift. ``brightening`` = mean of output minus anchor inside the field of view
(grey levels of the 0..255 output): the moment-matched anchors already give each row the target's mean, and their
clip at 0 lifts it above, so a checkpoint whose outputs are on average brighter than their anchor moves away from
the target's mean (one DDGAN seed of the demo learned +2.3 and fell below its own anchor; every other run looked at
darkened by 3-5 grey levels). With ``select_max_brightening`` a checkpoint must also stay at or below it.

``choose`` is the rule (pure); ``select_checkpoint`` runs it on a run folder and writes ``checkpoints/selected``
(which ``engine.checkpoint.find_checkpoint`` prefers to ``latest``) and ``selection.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sonoshift.atomic import atomic_write_text
from sonoshift.engine.checkpoint import SELECTED
from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor import evenly


def choose(steps: Sequence[int], kept: Sequence[float], floor: float, brightening: Sequence[float] | None = None,
           max_brightening: float = float("inf")) -> int:
    """The last step whose ``kept`` value is at least ``floor`` and, with ``brightening``, whose brightening is at
    most ``max_brightening``; the first step when none is (a NaN never is)."""
    b = [0.0] * len(steps) if brightening is None else list(brightening)
    if not steps or len(steps) != len(kept) or len(steps) != len(b):
        raise SonoshiftError(f"checkpoint selection needs one score per checkpoint, got {len(steps)} checkpoints, "
                             f"{len(kept)} structure scores and {len(b)} brightening scores.")
    ok = [s for s, k, d in zip(steps, kept, b) if np.isfinite(k) and k >= floor and np.isfinite(d)
          and d <= max_brightening]
    return ok[-1] if ok else steps[0]


@torch.no_grad()
def checkpoint_scores(tr: Any, frames: np.ndarray, masks: np.ndarray, seed: int = 0, batch: int = 32
                      ) -> tuple[float, float]:
    """(structure_kept, brightening) of ``tr`` on uint8 ``frames`` (N, H, W) inside the boolean field of view
    ``masks`` (N, H, W): the mean LNCC between its outputs and its anchor images (``tr.base``), and the mean of
    output minus anchor over every field-of-view pixel, in grey levels of 0..255; one seeded generator for the call."""
    from sonoshift.inference.translate import to_signed
    from sonoshift.metrics.lncc import lncc

    g = torch.Generator().manual_seed(seed)
    vals, diff, n = [], 0.0, 0
    for i in range(0, len(frames), batch):
        x = to_signed(np.asarray(frames[i : i + batch]))
        out, base = tr(x, generator=g), tr.base(x)
        m = torch.from_numpy(np.asarray(masks[i : i + batch]))[:, None]
        vals.append(lncc((out + 1) / 2, (base + 1) / 2, m))
        diff += float(((out - base) * 127.5)[m].double().sum())
        n += int(m.sum())
    v = torch.cat(vals).numpy()
    kept = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    return kept, (diff / n if n else float("nan"))


def structure_kept(tr: Any, frames: np.ndarray, masks: np.ndarray, seed: int = 0, batch: int = 32) -> float:
    """Mean LNCC between ``tr``'s outputs and its anchor images (:func:`checkpoint_scores`)."""
    return checkpoint_scores(tr, frames, masks, seed, batch)[0]


def validation_frames(data: str | Path, source: str, split: str = "val", max_frames: int = 160
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_frames`` evenly spaced uint8 ``source`` frames (N, H, W) of ``split`` of the prepared dataset
    ``data`` and their boolean field-of-view masks; both empty when the split has no such frames with masks."""
    from sonoshift.data.cache import has_cache, load_cache

    if not (has_cache(data, split, source) and has_cache(data, split, source, "mask")):
        return np.zeros((0, 1, 1), np.uint8), np.zeros((0, 1, 1), bool)
    frames = load_cache(data, split, source)
    idx = evenly(len(frames), max_frames)
    return np.asarray(frames[idx]), np.asarray(load_cache(data, split, source, "mask")[idx]) > 0


def select_checkpoint(run: str | Path, data: str | Path, source: str, floor: float, split: str = "val",
                      max_frames: int = 160, max_brightening: float = float("inf")) -> Path | None:
    """Score every checkpoint of ``run`` on up to ``max_frames`` evenly spaced ``source`` frames of ``split`` of the
    prepared dataset ``data``, choose one (``choose`` with ``floor`` and ``max_brightening``), write
    ``run/selection.csv`` and ``run/checkpoints/selected``; return the chosen checkpoint folder. A dataset with no
    such frames keeps the latest checkpoint (None, said in one line)."""
    from sonoshift.engine.checkpoint import list_checkpoints
    from sonoshift.methods import load_translator
    from sonoshift.progress import console

    run = Path(run)
    ckpts = list_checkpoints(run)
    if not ckpts:
        raise SonoshiftError(f"{run} holds no checkpoint to select from.")
    x, m = validation_frames(data, source, split, max_frames)
    if not len(x):
        console.print(f"checkpoint selection: {data} has no {source} frames with masks in its {split} split; "
                      f"{run} keeps its latest checkpoint.")
        return None
    steps = [int(c.name.split("_")[-1]) for c in ckpts]
    kept, bright = zip(*(checkpoint_scores(load_translator(c), x, m) for c in ckpts))
    step = choose(steps, kept, floor, bright, max_brightening)
    rows = ["step,structure_kept,brightening,selected"] + [
        f"{s},{k:.5f},{b:+.3f},{int(s == step)}" for s, k, b in zip(steps, kept, bright)]
    atomic_write_text(run / "selection.csv", "\n".join(rows) + "\n")
    chosen = ckpts[steps.index(step)]
    atomic_write_text(run / "checkpoints" / SELECTED, chosen.name + "\n")
    return chosen


__all__ = ["checkpoint_scores", "choose", "evenly", "select_checkpoint", "structure_kept", "validation_frames"]
