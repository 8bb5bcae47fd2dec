"""Labelled frames of a prepared dataset (docs/formats.md section 2) for plane classification.

Every manifest row with a non-empty label column (default ``plane``) is one sample: the prepared frame (uint8,
field of view already cropped and resized), its label, domain (machine / centre / scanner profile) and patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from sonoshift.data.manifests import read_manifest
from sonoshift.data.splits import SPLITS, read_splits
from sonoshift.io.images import read_gray
from sonoshift.errors import SonoshiftError


@dataclass(frozen=True)
class Samples:
    """Frames (N, S, S) uint8 with one label, domain, patient id and path (relative to ``root``) each."""

    frames: np.ndarray
    labels: tuple[str, ...]
    domains: tuple[str, ...]
    patients: tuple[str, ...]
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: Sequence[bool] | np.ndarray) -> Samples:
        k = np.asarray(keep, dtype=bool)
        pick = lambda xs: tuple(x for x, m in zip(xs, k) if m)  # noqa: E731
        return Samples(self.frames[k], pick(self.labels), pick(self.domains), pick(self.patients), pick(self.paths))

    def with_frames(self, frames: np.ndarray) -> Samples:
        return Samples(frames, self.labels, self.domains, self.patients, self.paths)

    def plus(self, other: Samples) -> Samples:
        """These samples followed by ``other``'s (same frame size)."""
        return Samples(np.concatenate([self.frames, other.frames]), self.labels + other.labels,
                       self.domains + other.domains, self.patients + other.patients, self.paths + other.paths)


def _fit(frame: np.ndarray, size: int) -> np.ndarray:
    return frame if frame.shape == (size, size) else cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def load_samples(
    dataset: str | Path, splits: Sequence[str], size: int, *, label: str = "plane",
    domains: Sequence[str] | None = None,
) -> Samples:
    """Rows of ``manifest_<split>.csv`` for each split in ``splits`` that carry ``label``, frames resized to
    ``size`` x ``size`` (INTER_AREA). ``domains``: keep only these. splits.json is read (leakage check) first."""
    root = Path(dataset)
    if not (root / "dataset.json").is_file():
        raise SonoshiftError(f"{root} is not a prepared dataset (no dataset.json); run `sonoshift prepare` first.")
    if (root / "splits.json").is_file():
        read_splits(root / "splits.json")
    frames, labels, doms, pats, paths = [], [], [], [], []
    for split in splits:
        if split not in SPLITS:
            raise SonoshiftError(f"unknown split {split!r} (known: {', '.join(SPLITS)}).")
        man = root / f"manifest_{split}.csv"
        if not man.is_file():
            continue
        for row in read_manifest(man):
            value = (row.get(label) or "").strip()
            if not value or (domains is not None and row["domain"] not in domains):
                continue
            frames.append(_fit(read_gray(root / row["path"]), size))
            labels.append(value)
            doms.append(row["domain"])
            pats.append(row["patient_id"])
            paths.append(row["path"])
    arr = np.stack(frames) if frames else np.zeros((0, size, size), np.uint8)
    return Samples(arr, tuple(labels), tuple(doms), tuple(pats), tuple(paths))


def resolve_classes(labels: Sequence[str], wanted: Sequence[str]) -> tuple[str, ...]:
    """The class list: ``wanted`` when given (each must occur in ``labels``), else the sorted distinct labels."""
    found = sorted(set(labels))
    if not wanted:
        if len(found) < 2:
            raise SonoshiftError(f"plane classification needs at least 2 labels in the training frames, found {found}.")
        return tuple(found)
    missing = [c for c in wanted if c not in found]
    if missing:
        raise SonoshiftError(
            f"unknown class name {missing[0]!r}: no training frame has it (labels found: {', '.join(found)})."
        )
    return tuple(wanted)


def encode(labels: Sequence[str], classes: Sequence[str], *, strict: bool = True) -> np.ndarray:
    """Class ids (N,) int64; a label not in ``classes`` raises (``strict``) or becomes -1."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.array([index.get(l, -1) for l in labels], dtype=np.int64)
    if strict and (out < 0).any():
        bad = sorted({l for l in labels if l not in index})
        raise SonoshiftError(
            f"unknown class name {bad[0]!r}: the classifier knows {', '.join(classes)} "
            "(restrict the data or retrain with this class)."
        )
    return out


def to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S) -> float32 (N, 1, S, S) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0).unsqueeze(1)
