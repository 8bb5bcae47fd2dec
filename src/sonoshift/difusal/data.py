"""Frames of a prepared dataset with plane, GA and patient, and the label regimes drawn from them.

A label regime keeps the labels of a seeded share of the training PATIENTS (the other training frames are not
used at all, so every arm of a regime has the same real-image count); val and test keep every patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from sonoshift.data.manifests import read_manifest
from sonoshift.data.splits import read_splits
from sonoshift.io.images import read_gray
from sonoshift.errors import SonoshiftError


@dataclass(frozen=True)
class Frames:
    """x: float (N, 1, S, S) in [-1, 1]; y: plane ids (N,); ga: weeks (N,), NaN = unknown; patients (N,);
    videos (N,): "domain/video_id" of each real frame (None for synthetic sets); domain (N,): the generator's
    domain token of each frame (0 = unknown; None: not set, e.g. synthetic sets or runs without domain tokens)."""

    x: torch.Tensor
    y: np.ndarray
    ga: np.ndarray
    patients: np.ndarray
    videos: np.ndarray | None = None
    domain: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, idx: np.ndarray) -> Frames:
        idx = np.asarray(idx, dtype=np.int64)
        return Frames(self.x[torch.from_numpy(idx)], self.y[idx], self.ga[idx], self.patients[idx],
                      None if self.videos is None else self.videos[idx],
                      None if self.domain is None else self.domain[idx])

    def with_domain(self, token: int) -> Frames:
        """The same frames with every frame's domain token set to ``token``."""
        return Frames(self.x, self.y, self.ga, self.patients, self.videos, np.full(len(self), token, np.int64))

    @staticmethod
    def concat(parts: list[Frames]) -> Frames:
        full = [p for p in parts if len(p)]
        if not full:
            return parts[0]
        parts = full
        videos = None if any(p.videos is None for p in parts) else np.concatenate([p.videos for p in parts])
        domain = (None if all(p.domain is None for p in parts) else np.concatenate(
            [p.domain if p.domain is not None else np.zeros(len(p), np.int64) for p in parts]))
        return Frames(torch.cat([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                      np.concatenate([p.ga for p in parts]), np.concatenate([p.patients for p in parts]), videos,
                      domain)


def load_split(dataset: str | Path, split: str, planes: tuple[str, ...], size: int,
               domains: tuple[str, ...] = (), fill_plane: str = "") -> Frames:
    """Every row of ``manifest_<split>.csv`` whose plane is in ``planes`` (aliases: the simulator's names are
    used as they are) and, when ``domains`` is given, whose domain is one of them, resized to ``size``. A row with
    no plane label counts as ``fill_plane`` when it is given (HC18 shows heads only and has no plane column).
    splits.json is read first (patient leakage check)."""
    root = Path(dataset)
    if not (root / "dataset.json").is_file():
        raise SonoshiftError(f"{root} is not a prepared dataset (no dataset.json); run `sonoshift prepare` first.")
    if (root / "splits.json").is_file():
        read_splits(root / "splits.json")
    man = root / f"manifest_{split}.csv"
    if not man.is_file():
        raise SonoshiftError(f"{man} is missing: the loop needs train, val and test manifests.")
    xs, ys, gas, pats, vids = [], [], [], [], []
    for row in read_manifest(man):
        plane = (row.get("plane") or "").strip() or fill_plane
        if plane not in planes or (domains and (row.get("domain") or "") not in domains):
            continue
        img = read_gray(root / row["path"])
        if img.shape != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        xs.append(img)
        ys.append(planes.index(plane))
        g = (row.get("ga_weeks") or "").strip()
        gas.append(float(g) if g else math.nan)
        pats.append(row["patient_id"])
        vids.append(f"{row.get('domain') or ''}/{row.get('video_id') or row['path']}")
    if not xs:
        where = f" in the domains {', '.join(domains)}" if domains else ""
        raise SonoshiftError(f"{man} has no frame of the planes {', '.join(planes)}{where}.")
    x = torch.from_numpy(np.stack(xs)).float().div(127.5).sub(1.0).unsqueeze(1)
    return Frames(x, np.asarray(ys, np.int64), np.asarray(gas, np.float64), np.asarray(pats), np.asarray(vids))


def cap_per_class(f: Frames, cap: int, n_classes: int, rng: np.random.Generator) -> Frames:
    """At most ``cap`` frames of each class, drawn without replacement (order kept)."""
    keep = []
    for c in range(n_classes):
        idx = np.flatnonzero(f.y == c)
        if len(idx) > cap:
            idx = np.sort(rng.choice(idx, cap, replace=False))
        keep.append(idx)
    return f.take(np.sort(np.concatenate(keep)))


def labelled_patients(patients: np.ndarray, fraction: float, rng: np.random.Generator) -> set[str]:
    """A seeded share ``fraction`` of the distinct patients (at least one)."""
    ids = np.unique(patients)
    n = max(1, int(round(fraction * len(ids))))
    return set(rng.choice(ids, n, replace=False).tolist())


def regime_train(train: Frames, fraction: float, cap: int, n_classes: int, seed: int) -> Frames:
    """The labelled training frames of a regime: the chosen patients' frames, capped per class."""
    return regime_split(train, fraction, cap, n_classes, seed)[0]


def regime_split(train: Frames, fraction: float, cap: int, n_classes: int, seed: int) -> tuple[Frames, set[str]]:
    """(the regime's labelled training frames, the ids of the training patients whose labels it does not keep)."""
    rng = np.random.default_rng(seed)
    keep = labelled_patients(train.patients, fraction, rng)
    sub = train.take(np.flatnonzero(np.isin(train.patients, list(keep))))
    return cap_per_class(sub, cap, n_classes, rng), set(np.unique(train.patients).tolist()) - keep


def unlabelled_frames(train: Frames, patients: set[str], n: int, seed: int) -> Frames:
    """Up to ``n`` frames of ``patients`` drawn uniformly at random (never by label), returned as images only:
    plane id -1 (the generator's null plane token) and GA NaN (null GA), so nothing downstream can read a label."""
    idx = np.flatnonzero(np.isin(train.patients, list(patients)))
    if len(idx) > n:
        idx = np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))
    f = train.take(idx)
    return Frames(f.x, np.full(len(f), -1, np.int64), np.full(len(f), np.nan), f.patients, f.videos, f.domain)


__all__ = ["Frames", "cap_per_class", "labelled_patients", "load_split", "regime_split", "regime_train",
           "unlabelled_frames"]
