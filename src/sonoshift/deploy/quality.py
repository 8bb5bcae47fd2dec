"""Quality of translators on a prepared split with simulator ground truth: GT PSNR, GT SSIM and downstream Dice.

What `bench/realtime.py` puts next to each variant's speed (teacher, student, ONNX Runtime fp32/int8, baselines),
all in memory, on the same frames:

- GT PSNR / SSIM: each harmonized source frame against the simulator's rendering of the same slice with the
  target profile (``gt_<target>``), inside the field of view (pixels outside it are set to 0 in both);
- downstream Dice: a frozen target-domain segmenter (``sonoshift segment``, the one the demo trains) applied to
  the harmonized frame, scored against the frame's label map (classes merged by the segmenter's ``label_lut``),
  outside the field of view predicted as background; per frame the mean over foreground classes present in the
  prediction or the reference (as ``downstream.evaluate_seg``), then the mean over frames. The same segmenter on
  the ground-truth frames gives the upper bound a perfect harmonizer would reach.

Every score is also kept per frame, with each frame's patient (``SplitReference.patients``), so that a table
can carry patient bootstrap intervals (``metrics.bootstrap.patient_bootstrap``), of a mean or of the paired
difference between two translators on the same frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sonoshift.errors import SonoshiftError


@dataclass(frozen=True)
class SplitReference:
    """The source frames of one split with what scores them: ``frames``, ``gt`` and ``fov`` (N, H, W) (uint8,
    uint8, bool), ``labels`` (N, H, W) class ids of ``segmenter`` (None without one), the ``segmenter``, and
    ``patients`` (N,) the patient id of each frame (None when unknown)."""

    frames: np.ndarray
    gt: np.ndarray
    fov: np.ndarray
    labels: np.ndarray | None = None
    segmenter: Any = None
    patients: np.ndarray | None = None

    @classmethod
    def load(cls, data: str | Path, split: str, source: str, target: str,
             segmenter: str | Path | None = None, stride: int = 1) -> SplitReference:
        """Read the packed caches of ``split`` (source frames, ``gt_<target>``, field-of-view masks and, with a
        segmenter checkpoint, the label maps) of the prepared dataset ``data``; every ``stride``-th frame (cine
        frames next to each other are nearly alike: a stride keeps every patient and sweep at a fraction of the
        cost)."""
        from sonoshift.data.cache import has_cache

        def load_cache(*args: str) -> np.ndarray:
            from sonoshift.data.cache import load_cache as read

            return np.array(read(data, *args)[::stride])  # a writable copy

        if stride < 1:
            raise SonoshiftError(f"the frame stride must be at least 1, got {stride}.")
        frames = load_cache(split, source)
        if not has_cache(data, split, source, f"gt_{target}"):
            raise SonoshiftError(f"{data} has no ground truth gt_{target} for the {split} {source} frames (quality "
                                 "needs a simulated dataset).")
        gt = load_cache(split, source, f"gt_{target}")
        fov = load_cache(split, source, "mask") > 0
        from sonoshift.data.cache import load_cache as read

        patients = split_patients(data, split, source, len(read(data, split, source)))
        patients = None if patients is None else patients[::stride]
        if segmenter is None:
            return cls(frames, gt, fov, patients=patients)
        from sonoshift.downstream.evaluate_seg import label_lut
        from sonoshift.downstream.segmenter import load_segmenter

        seg = load_segmenter(segmenter)
        if not has_cache(data, split, source, "label_map"):
            raise SonoshiftError(f"{data} has no label maps for the {split} {source} frames (Dice needs them).")
        labels = label_lut(seg)[load_cache(split, source, "label_map")]
        return cls(frames, gt, fov, labels, seg, patients)


def split_patients(data: str | Path, split: str, domain: str, n: int) -> np.ndarray | None:
    """The patient id (N,) of each packed frame of ``domain`` in ``split`` (the cache is in manifest order for the
    domain), read from ``manifest_<split>.csv``; None when there is no manifest or it does not list ``n`` frames."""
    from sonoshift.data.manifests import read_manifest

    path = Path(data) / f"manifest_{split}.csv"
    if not path.is_file():
        return None
    ids = np.array([r["patient_id"] for r in read_manifest(path) if r["domain"] == domain])
    return ids if len(ids) == n else None


def frame_dice(seg: Any, images: np.ndarray, labels: np.ndarray, fov: np.ndarray, batch_size: int = 16
               ) -> np.ndarray:
    """Per-frame mean foreground Dice (N,) of ``seg`` on uint8 ``images`` (N, H, W) against class-id ``labels``,
    predictions outside ``fov`` set to background (NaN where no foreground class is in prediction or label)."""
    from sonoshift.downstream.segmenter import predict
    from sonoshift.metrics.segmentation import dice_per_class

    out = np.full(len(images), np.nan)
    for i in range(0, len(images), batch_size):
        preds = predict(seg, list(images[i : i + batch_size]), batch_size)
        for j, pred in enumerate(preds, start=i):
            d = dice_per_class(np.where(fov[j], pred, 0).astype(np.uint8), labels[j], seg.num_classes)
            out[j] = float(np.nanmean(d)) if np.isfinite(d).any() else np.nan
    return out


def frame_scores(images: np.ndarray, ref: SplitReference) -> dict[str, np.ndarray]:
    """Per-frame GT PSNR (dB), GT SSIM and (with a segmenter) downstream Dice (N,) of uint8 outputs (N, H, W)
    aligned with ``ref.frames``."""
    from sonoshift.metrics.pixel import psnr
    from sonoshift.metrics.ssim import ssim

    if images.shape != ref.frames.shape:
        raise SonoshiftError(f"outputs {images.shape} do not match the split's frames {ref.frames.shape}.")
    mask = torch.from_numpy(ref.fov)[:, None]
    y = torch.from_numpy(np.asarray(images)).float()[:, None] / 255 * mask
    gt = torch.from_numpy(ref.gt).float()[:, None] / 255 * mask
    out = {"gt_psnr": psnr(y, gt, mask).double().numpy(), "gt_ssim": ssim(y, gt, mask).double().numpy()}
    if ref.segmenter is not None:
        out["dice"] = frame_dice(ref.segmenter, np.asarray(images), ref.labels, ref.fov)
    return out


def score_frames(images: np.ndarray, ref: SplitReference,
                 per_frame: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Mean GT PSNR (dB), GT SSIM and (with a segmenter) downstream Dice (NaN frames left out) of uint8 outputs
    (N, H, W) aligned with ``ref.frames``; ``n`` frames. ``per_frame``: filled with :func:`frame_scores`."""
    scores = frame_scores(images, ref)
    if per_frame is not None:
        per_frame.update(scores)
    return {**{k: float(np.nanmean(v)) for k, v in scores.items()}, "n": int(len(images))}


def translate_split(translator: Any, ref: SplitReference, *, batch_size: int = 8, seed: int = 0) -> np.ndarray:
    """uint8 outputs (N, H, W) of ``translator`` on the split's frames (resized to its size and back; stochastic
    translators draw from a generator seeded ``seed``)."""
    from sonoshift.inference.translate import run_translator, to_signed, to_uint8

    g = torch.Generator().manual_seed(seed)
    return to_uint8(run_translator(translator, to_signed(ref.frames), batch_size=batch_size, generator=g))


def split_quality(translators: dict[str, Any], ref: SplitReference, *, batch_size: int = 8, seed: int = 0,
                  on_row: Callable[[str, dict[str, float]], None] | None = None,
                  per_frame: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, dict[str, float]]:
    """:func:`score_frames` of each named translator on ``ref``'s frames, plus "ground truth (upper bound)" (the
    ground-truth frames themselves: PSNR inf, SSIM 1, the segmenter's best Dice) when a segmenter is given.
    ``on_row(name, scores)`` is called as each row is ready (long runs show results as they come);
    ``per_frame`` is filled with each row's :func:`frame_scores` (for patient bootstrap intervals)."""
    out: dict[str, dict[str, float]] = {}
    rows = list(translators.items()) + ([("ground truth (upper bound)", None)] if ref.segmenter is not None else [])
    for name, tr in rows:
        images = ref.gt if tr is None else translate_split(tr, ref, batch_size=batch_size, seed=seed)
        frames: dict[str, np.ndarray] = {}
        out[name] = score_frames(images, ref, frames)
        if per_frame is not None:
            per_frame[name] = frames
        if on_row is not None:
            on_row(name, out[name])
    return out


__all__ = ["SplitReference", "frame_dice", "frame_scores", "score_frames", "split_patients", "split_quality",
           "translate_split"]
