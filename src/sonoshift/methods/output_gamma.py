"""A task-aware output gamma for the diffusion translators, chosen without labels (issue 12, session 38).

A harmonizer serves a model trained on the target scanner. After training, a *critic* (a segmenter of the target
domain, another instance of the task model, never the one that judges the run) reads the translator's outputs on
the validation split's source frames under each grey-level gamma of a small grid, y' = y ** g on the 0..1 scale
(black stays black, white stays white, every level keeps its order), and the gamma under which the critic is
surest (lowest mean softmax entropy inside the field of view) is kept in the translator's checkpoint
(``metadata.output_gamma``). No label of the source frames and no ground truth is read; the critic's own training
labels are target-domain labels, which a deployment has anyway.

What it trades (docs/diffusion.md §19): on the demo data the critic picks 1.1 for every translator seed; the frozen
judge's Dice share of the scanner gap rises by 2.5 points, while GT PSNR falls by up to 0.9 dB and the texture
spectrum moves 0.4 dB further from the truth: the frames become what target segmenters read best, not closer to
the truth pixel by pixel.

``apply_gamma`` and ``choose_gamma`` are pure; ``critic_entropy`` scores frames; ``tune_output_gamma`` runs the
choice on a run folder and writes ``output_gamma.csv`` beside ``selection.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sonoshift.errors import SonoshiftError

GAMMAS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4)  # the grid of the session-38 probe (declared before it ran)


def apply_gamma(y: torch.Tensor, gamma: float) -> torch.Tensor:
    """``y`` in [-1, 1] -> the same with its 0..1 levels raised to ``gamma`` (clamped first; 1 = ``y`` itself)."""
    if gamma == 1.0:
        return y
    return ((y + 1.0) * 0.5).clamp(0.0, 1.0).pow(gamma) * 2.0 - 1.0


def choose_gamma(entropies: Mapping[float, float]) -> float:
    """The gamma with the lowest finite entropy; ties go to the one nearest 1 (the untouched output)."""
    ok = {float(g): float(e) for g, e in entropies.items() if np.isfinite(e)}
    if not ok:
        raise SonoshiftError("no gamma has a finite critic entropy: the critic read nothing inside the field of view.")
    return min(ok, key=lambda g: (ok[g], abs(g - 1.0), g))


def pixel_entropy(probs: np.ndarray) -> np.ndarray:
    """Softmax entropy (nats) per pixel of class probabilities (C, H, W)."""
    p = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(0)


def critic_entropy(critic: Any, frames: np.ndarray, masks: np.ndarray, batch: int = 32) -> float:
    """Mean softmax entropy of the segmenter ``critic`` over the field-of-view pixels (``masks``) of uint8
    ``frames`` (N, H, W), each frame weighted by its pixel count."""
    from sonoshift.downstream.segmenter import predict_proba

    total, n = 0.0, 0
    for i in range(0, len(frames), batch):
        for probs, m in zip(predict_proba(critic, list(frames[i : i + batch]), batch), masks[i : i + batch]):
            total += float(pixel_entropy(probs)[m].sum())
            n += int(m.sum())
    return total / n if n else float("nan")


def load_critic(path: str | Path, target: str = "") -> Any:
    """The critic segmenter at ``path`` (a `sonoshift segment train` folder), or one sentence saying what is wrong;
    with ``target``, a critic trained on another domain (its ``info.domain``) is refused too."""
    from sonoshift.downstream.segmenter import load_segmenter

    path = Path(path)
    if not (path / "segmenter.json").is_file():
        raise SonoshiftError(f"task_critic {path} is not a segmenter folder (no segmenter.json): give the output of "
                             "`sonoshift segment train` on the target domain.")
    critic = load_segmenter(path, "cpu")
    domain = str(critic.info.get("domain") or "")
    if target and domain and domain != target:
        raise SonoshiftError(f"task_critic {path} was trained on domain '{domain}', but the translator's target is "
                             f"'{target}': the critic must be a model of the target domain.")
    return critic


def gamma_entropies(tr: Any, critic: Any, frames: np.ndarray, masks: np.ndarray, gammas: Sequence[float],
                    seed: int = 0, batch: int = 32) -> dict[float, float]:
    """{gamma: the critic's mean entropy on ``tr``'s outputs for ``frames`` under that gamma}: one translation
    (one seeded generator), every gamma applied to the same outputs."""
    from sonoshift.inference.translate import run_translator, to_signed, to_uint8

    outs = run_translator(tr, to_signed(frames), batch_size=batch, generator=torch.Generator().manual_seed(seed))
    return {float(k): critic_entropy(critic, to_uint8(apply_gamma(outs, float(k))), masks, batch) for k in gammas}


def tune_output_gamma(run: str | Path, data: str | Path, source: str, critic: str | Path,
                      gammas: Sequence[float] = GAMMAS, split: str = "val", max_frames: int = 160) -> float | None:
    """Choose the output gamma of the translator run ``run`` (its checkpoint in use) with the segmenter ``critic``
    on up to ``max_frames`` evenly spaced ``source`` frames of ``split``; write it into that checkpoint's metadata
    and ``run/output_gamma.csv``; return it (None, said in one line, when the split has no such frames)."""
    from sonoshift.atomic import atomic_write_text
    from sonoshift.engine.checkpoint import find_checkpoint, update_metadata
    from sonoshift.methods import load_translator
    from sonoshift.methods.select import validation_frames
    from sonoshift.progress import console

    run = Path(run)
    frames, masks = validation_frames(data, source, split, max_frames)
    if not len(frames):
        console.print(f"output gamma: {data} has no {source} frames with masks in its {split} split; {run} keeps "
                      "its outputs as they are.")
        return None
    tr = load_translator(run)
    crit = load_critic(critic, tr.target_domain)
    tr.output_gamma = 1.0  # choose from the untouched outputs, also when an earlier choice is stored
    ent = gamma_entropies(tr, crit, frames, masks, gammas)
    chosen = choose_gamma(ent)
    rows = ["gamma,critic_entropy,chosen"] + [f"{g:g},{e:.6f},{int(g == chosen)}" for g, e in ent.items()]
    atomic_write_text(run / "output_gamma.csv", "\n".join(rows) + "\n")
    choice = {"critic": str(Path(critic).resolve()), "split": split, "frames": int(len(frames)),
              "entropies": {f"{g:g}": e for g, e in ent.items()}}
    update_metadata(find_checkpoint(run), output_gamma=chosen, output_gamma_choice=choice)
    return chosen


__all__ = ["GAMMAS", "apply_gamma", "choose_gamma", "critic_entropy", "gamma_entropies", "load_critic",
           "pixel_entropy", "tune_output_gamma"]
