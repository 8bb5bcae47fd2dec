"""Torch datasets over a prepared dataset (docs/formats.md section 2): unpaired two-domain and labelled frames.

Images come from the packed cache (memory-mapped uint8, see ``data/cache.py``) and are returned as float32
(1, H, W) in [-1, 1]; ``signed_to_unit`` / ``unit_to_signed`` convert between [-1, 1] and [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sonoshift.data.cache import has_cache, load_cache
from sonoshift.data.manifests import ga_weeks_of, read_manifest
from sonoshift.data.splits import split_record, verify_split
from sonoshift.errors import SonoshiftError
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels

IGNORE_INDEX = -100  # label-map value for frames without a label map (torch's cross-entropy default)


def signed_to_unit(x):
    """[-1, 1] -> [0, 1] (tensor or array, same type)."""
    return (x + 1) / 2


def unit_to_signed(x):
    """[0, 1] -> [-1, 1] (tensor or array, same type)."""
    return x * 2 - 1


def uint8_to_signed(frame: np.ndarray) -> torch.Tensor:
    """A uint8 (H, W) frame -> float32 tensor (1, H, W) in [-1, 1] (0 -> -1, 255 -> 1)."""
    t = torch.from_numpy(np.asarray(frame, dtype=np.float32).copy())
    return (t / 127.5 - 1.0).unsqueeze(0)


def resize_image(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (C, H, W) float tensor to (C, size, size); None keeps it."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def resize_nearest(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Nearest-neighbour resize of a (H, W) or (C, H, W) tensor of any dtype to size x size; None keeps it."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    arr = x.numpy()
    if arr.ndim == 2:
        out = cv2.resize(arr, (size, size), interpolation=cv2.INTER_NEAREST)
    else:
        out = np.stack([cv2.resize(a, (size, size), interpolation=cv2.INTER_NEAREST) for a in arr])
    return torch.from_numpy(np.ascontiguousarray(out))


def _check_root(root: Path) -> None:
    if not (root / "dataset.json").is_file():
        raise SonoshiftError(f"{root} is not a prepared dataset (no dataset.json); run `sonoshift prepare` first.")


def _check_size(size: int | None) -> int | None:
    if size is not None and (int(size) != size or size < 1):
        raise SonoshiftError(f"dataset size must be a positive integer, got {size!r}.")
    return None if size is None else int(size)


class UnpairedDataset(torch.utils.data.Dataset):
    """Source frames of one split, each paired with a target-domain frame that changes every epoch.

    root: prepared dataset folder; split: "train" | "val" | "test"; seed: seeds the pairing, with the epoch
    (``set_epoch``); size: None keeps the prepared size, else frames are resized on the fly (bilinear).
    Items: {"source", "target": float32 (1, H, W) in [-1, 1], "source_index", "target_index": int}.
    Only ``cache/<split>/<domain>.npy`` is read (memory-mapped, opened lazily in each worker).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        source_domain: str,
        target_domain: str,
        *,
        seed: int = 0,
        size: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.source_domain = source_domain
        self.target_domain = target_domain
        self.seed = int(seed)
        self.size = _check_size(size)
        splits = verify_split(self.root, split)  # leakage check on every read
        self.split_record = split_record(splits, split) if splits is not None else None
        src, tgt = load_cache(self.root, split, source_domain), load_cache(self.root, split, target_domain)
        if len(src) == 0 or len(tgt) == 0:
            empty = source_domain if len(src) == 0 else target_domain
            raise SonoshiftError(f"prepared dataset {self.root} has no {split} frames of domain {empty!r}.")
        self.n_source, self.n_target = len(src), len(tgt)
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.epoch = 0
        self.set_epoch(0)

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (
                load_cache(self.root, self.split, self.source_domain),
                load_cache(self.root, self.split, self.target_domain),
            )
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = None  # memory maps are reopened in each worker
        return state

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh target pairing from a generator seeded by (seed, epoch): source i gets target
        ``perm[i % n_target]`` for a random permutation ``perm`` of the target frames."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        self.target_order = rng.permutation(self.n_target)

    def __len__(self) -> int:
        return self.n_source

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.n_source <= i < self.n_source:
            raise IndexError(i)
        i = i % self.n_source
        src, tgt = self._open()
        j = int(self.target_order[i % self.n_target])
        return {
            "source": resize_image(uint8_to_signed(src[i]), self.size),
            "target": resize_image(uint8_to_signed(tgt[j]), self.size),
            "source_index": i,
            "target_index": j,
        }


class FrameDataset(torch.utils.data.Dataset):
    """Labelled frames of one split (optionally one domain), in manifest order.

    Items: "image" float32 (1, H, W) in [-1, 1]; "mask" float32 (1, H, W) in {0, 1} (field of view);
    "label_map" int64 (H, W) when the dataset has label maps (IGNORE_INDEX for frames without one);
    "plane" (str, "" unknown) and "plane_index" (index into ``self.planes``, -1 unknown); "ga_weeks" (float,
    nan unknown); "patient_id", "domain", "video_id", "path" (str); "frame_index" (int).
    Images, masks and label maps come from the packed cache when it matches the manifest, else from the PNGs.
    size: None keeps the prepared size; else images are resized bilinear, masks and label maps nearest.
    """

    def __init__(
        self, root: str | Path, split: str, domain: str | None = None, *, size: int | None = None,
        use_cache: bool = True,
    ) -> None:
        self.root = Path(root)
        _check_root(self.root)
        self.split = split
        self.size = _check_size(size)
        info = json.loads((self.root / "dataset.json").read_text(encoding="utf-8"))
        splits = verify_split(self.root, split)  # leakage check on every read
        self.split_record = split_record(splits, split) if splits is not None else None
        self.planes: list[str] = list(info.get("planes", []))
        rows = read_manifest(self.root / f"manifest_{split}.csv")
        counter: dict[str, int] = {}
        self.rows: list[dict[str, str]] = []
        self.cache_index: list[int] = []
        for r in rows:
            k = counter.get(r["domain"], 0)
            counter[r["domain"]] = k + 1
            if domain is None or r["domain"] == domain:
                self.rows.append(r)
                self.cache_index.append(k)
        if domain is not None and not self.rows:
            raise SonoshiftError(f"prepared dataset {self.root} has no {split} frames of domain {domain!r}.")
        self.counts = counter
        self.use_cache = use_cache and all(
            has_cache(self.root, split, d) and has_cache(self.root, split, d, "mask") for d in counter
        )
        self.has_label_map = any(r.get("label_path") for r in rows)  # split-wide, so batches share keys
        labels = sorted(n for n, kind in info.get("aligned", {}).items() if kind == "label")
        self.label_name = "label_map" if "label_map" in labels else (labels[0] if labels else None)
        self._arrays: dict[tuple[str, str | None], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def _cached(self, domain: str, kind: str | None) -> np.ndarray:
        key = (domain, kind)
        if key not in self._arrays:
            arr = load_cache(self.root, self.split, domain, kind)
            if len(arr) != self.counts[domain]:
                raise SonoshiftError(
                    f"packed cache of {domain!r}/{self.split} in {self.root} has {len(arr)} frames but the "
                    f"manifest has {self.counts[domain]}."
                )
            self._arrays[key] = arr
        return self._arrays[key]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.rows[i]
        if self.use_cache:
            img = self._cached(r["domain"], None)[self.cache_index[i]]
            mask = self._cached(r["domain"], "mask")[self.cache_index[i]]
        else:
            img = read_gray(self.root / r["path"])
            mask = read_gray(self.root / r["mask_path"]) if r.get("mask_path") else np.full_like(img, 255)
        image = resize_image(uint8_to_signed(img), self.size)
        mask_t = resize_nearest(torch.from_numpy(np.ascontiguousarray(mask > 0)).to(torch.float32)[None], self.size)
        plane = r.get("plane", "") or ""
        item: dict[str, Any] = {
            "image": image,
            "mask": mask_t,
            "plane": plane,
            "plane_index": self.planes.index(plane) if plane in self.planes else -1,
            "ga_weeks": ga_weeks_of(r, self.root / f"manifest_{self.split}.csv"),
            "patient_id": r["patient_id"],
            "domain": r["domain"],
            "video_id": r["video_id"],
            "frame_index": int(r["frame_index"]),
            "path": r["path"],
        }
        if self.has_label_map:
            if r.get("label_path"):
                cached = self.label_name and has_cache(self.root, self.split, r["domain"], self.label_name)
                if self.use_cache and cached:
                    lab_u8 = self._cached(r["domain"], self.label_name)[self.cache_index[i]]
                else:
                    lab_u8 = read_labels(self.root / r["label_path"])
                lab = torch.from_numpy(lab_u8.astype(np.int64))
            else:
                lab = torch.full(tuple(img.shape), IGNORE_INDEX, dtype=torch.int64)
            item["label_map"] = resize_nearest(lab, self.size)
        return item
