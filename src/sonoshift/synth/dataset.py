"""Training frames for the synthesizer: one or more prepared datasets combined, with plane / GA / scanner labels.

Labels come from the manifests' ``plane`` and ``ga_weeks`` columns (empty = unknown) and the ``domain`` column
(the scanner). Plane names are unified through ``plane_aliases``; a dataset with no plane labels at all can be
given one (``fill_plane``: HC18 shows heads only). Optionally every plane is drawn equally often per epoch
(``balance``): the simulator's sweeps are ~90% "other" frames, which would starve the rare planes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sonoshift.data.datasets import FrameDataset, resize_image
from sonoshift.data.manifests import ga_weeks_of
from sonoshift.errors import SonoshiftError
from sonoshift.synth.african import african_test_mask
from sonoshift.synth.config import SynthData


def dataset_name(root: Path) -> str:
    """The spec name recorded in ``dataset.json`` (``hc18``, ``fetal_planes_db``, ...), else the folder name."""
    try:
        info = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        info = {}
    return str(info.get("name") or root.name)


def data_hash(paths: Sequence[str | Path], split: str) -> str:
    """16 hex digits identifying the training data: sha256 over each dataset's input fingerprint and the bytes
    of its ``manifest_<split>.csv`` (so a re-split or a different selection changes it)."""
    h = hashlib.sha256()
    for p in paths:
        root = Path(p)
        try:
            fp = json.loads((root / "dataset.json").read_text(encoding="utf-8")).get("fingerprint", "")
        except (OSError, json.JSONDecodeError):
            fp = ""
        h.update(str(fp).encode())
        man = root / f"manifest_{split}.csv"
        if man.is_file():
            h.update(man.read_bytes())
    return h.hexdigest()[:16]


def _prepared_size(root: Path) -> int:
    info = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    return int(max(info.get("frame_size") or [0]))


@dataclass(frozen=True)
class Vocab:
    """Index tables of the conditions; index 0 of each table is the null token ("unknown")."""

    planes: tuple[str, ...]
    scanners: tuple[str, ...]

    def plane_index(self, plane: str | None) -> int:
        """1 + position in ``planes``; 0 for None/"" (unknown). Unknown names raise SonoshiftError."""
        if not plane:
            return 0
        if plane not in self.planes:
            raise SonoshiftError(f"plane {plane!r} is not one the model knows ({', '.join(self.planes)}).")
        return 1 + self.planes.index(plane)

    def scanner_index(self, scanner: str | None) -> int:
        """1 + position in ``scanners``; 0 for None/"" (unknown). Unknown names raise SonoshiftError."""
        if not scanner:
            return 0
        if scanner not in self.scanners:
            raise SonoshiftError(f"scanner {scanner!r} is not one the model knows ({', '.join(self.scanners)}).")
        return 1 + self.scanners.index(scanner)


class SynthDataset(torch.utils.data.Dataset):
    """Frames of ``cfg.split`` from every dataset in ``cfg.paths``.

    Items: "image" float32 (1, size, size) in [-1, 1]; "plane" int64 (0 unknown); "ga" float32 weeks (NaN
    unknown); "scanner" int64 (0 unknown); "index" int (row in ``self.rows``). With ``balance`` the epoch is a
    seeded draw of ``len(rows)`` indices with every known plane equally likely (``set_epoch`` redraws).
    Frames of African test-part patients (``synth/african.py``) are left out unless ``keep_african_test``
    (scoring only); ``african_test_dropped`` counts them.
    """

    def __init__(self, cfg: SynthData, *, seed: int = 0, balance: bool = False, keep_african_test: bool = False) -> None:
        if not cfg.paths:
            raise SonoshiftError("the synthesizer needs at least one prepared dataset (--data).")
        self.size, self.seed, self.balance = cfg.size, int(seed), balance
        self.paths = tuple(str(p) for p in cfg.paths)
        self.parts = [FrameDataset(p, cfg.split) for p in cfg.paths]
        self.rows: list[dict[str, Any]] = []
        self.african_test_dropped = 0
        for k, (p, part) in enumerate(zip(cfg.paths, self.parts)):
            fill = cfg.fill_plane.get(dataset_name(Path(p)), "")
            prepared = _prepared_size(Path(p))
            test_part = african_test_mask(dataset_name(Path(p)), [r["patient_id"] for r in part.rows])
            if not keep_african_test:
                self.african_test_dropped += int(test_part.sum())
            for i, r in enumerate(part.rows):
                if test_part[i] and not keep_african_test:
                    continue  # the African rule: the test part is never trained, tuned or selected on
                raw = r.get("plane", "") or fill
                self.rows.append({
                    "part": k, "i": i, "plane": cfg.plane_aliases.get(raw, raw),
                    "ga_weeks": ga_weeks_of(r, Path(p) / f"manifest_{cfg.split}.csv"), "scanner": r["domain"],
                    "patient_id": r["patient_id"], "video_id": r["video_id"], "frame_index": int(r["frame_index"]),
                    "path": str(Path(p) / r["path"]),
                    "pixel_size_mm": float(r["pixel_size_mm"]) if r.get("pixel_size_mm") else math.nan,
                    "prepared_size": prepared,
                })
        if not self.rows:
            raise SonoshiftError(f"no {cfg.split} frames in {', '.join(cfg.paths)}.")
        planes = cfg.planes or tuple(sorted({r["plane"] for r in self.rows if r["plane"]}))
        scanners = cfg.scanners or tuple(sorted({r["scanner"] for r in self.rows if r["scanner"]}))
        self.vocab = Vocab(tuple(planes), tuple(scanners))
        self.labels = [
            (1 + planes.index(r["plane"]) if r["plane"] in planes else 0,
             r["ga_weeks"],
             1 + scanners.index(r["scanner"]) if r["scanner"] in scanners else 0)
            for r in self.rows
        ]
        self.order = np.arange(len(self.rows))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """With ``balance``: draw this epoch's frames, each known plane with equal probability (frames of an
        unknown plane share one extra group); a generator seeded by (seed, epoch) makes it reproducible."""
        if not self.balance:
            return
        rng = np.random.default_rng([self.seed, int(epoch), 77])
        groups: dict[int, list[int]] = {}
        for i, (p, _, _) in enumerate(self.labels):
            groups.setdefault(p, []).append(i)
        keys = sorted(groups)
        which = rng.integers(0, len(keys), size=len(self.rows))
        self.order = np.array([groups[keys[w]][rng.integers(0, len(groups[keys[w]]))] for w in which])

    def pixel_size_mm(self) -> dict[str, float]:
        """Median mm per pixel at ``size`` for each scanner whose frames carry ``pixel_size_mm``."""
        out: dict[str, list[float]] = {}
        for r in self.rows:
            if math.isfinite(r["pixel_size_mm"]):
                out.setdefault(r["scanner"], []).append(r["pixel_size_mm"] * r["prepared_size"] / self.size)
        return {k: float(np.median(v)) for k, v in out.items()}

    def plane_counts(self) -> dict[str, int]:
        """Frames per plane name ("" = unknown)."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["plane"]] = out.get(r["plane"], 0) + 1
        return out

    def image(self, j: int) -> torch.Tensor:
        """Row ``j``'s frame as float32 (1, size, size) in [-1, 1]."""
        r = self.rows[j]
        return resize_image(self.parts[r["part"]][r["i"]]["image"], self.size)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.order[i])
        plane, ga, scanner = self.labels[j]
        return {
            "image": self.image(j),
            "plane": torch.tensor(plane, dtype=torch.int64),
            "ga": torch.tensor(ga, dtype=torch.float32),
            "scanner": torch.tensor(scanner, dtype=torch.int64),
            "index": j,
        }


__all__ = ["SynthDataset", "Vocab", "data_hash", "dataset_name"]
