"""The target-domain segmenter: a U-Net trained on one domain's frames of a prepared dataset and its label maps.

It reads ``manifest_<split>.csv`` of a prepared dataset (docs/formats.md §2): rows of the chosen domain with a
``label_path`` (the simulator's anatomy label maps), merges the anatomy into a few classes (``labels.py``), trains
(``segmenter.py``) and scores itself on the validation split. Frames are read from the PNGs named in the
manifest with small code of its own, so it depends only on the file contract, not on the dataset classes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonoshift.config import NonNegInt, PosInt, Validated, to_dict
from sonoshift.data.splits import split_record, verify_split
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels
from sonoshift.downstream.labels import class_lookup, find_labels_json, read_label_names
from sonoshift.downstream.segmenter import (
    ModelConfig,
    Segmenter,
    SegmenterTrainConfig,
    frames_to_input,
    labels_to_target,
    predict,
    save_segmenter,
    train_segmenter,
)
from sonoshift.errors import SonoshiftError
from sonoshift.metrics.segmentation import dice_per_class

# A class joins the first group whose pattern matches; head before body so "fetal_head" is a head.
DEFAULT_GROUPS: dict[str, list[str]] = {
    "background": ["background", "outside*", "*skin*", "*wall*", "maternal*", "uter*", "*myometr*", "*fat*"],
    "fetal_head": ["*head*", "*skull*", "*brain*", "*ventric*", "*midline*", "*thalam*", "*cereb*", "*falx*"],
    "placenta": ["*placenta*"],
    "fluid": ["*amnio*", "*fluid*"],
    "fetal_body": ["*body*", "*abdom*", "*stomach*", "*spine*", "*vertebr*", "*femur*", "*limb*", "*bone*",
                   "*heart*", "*thora*", "*lung*", "*liver*", "*bladder*", "*rib*", "*umbilic*", "*cord*",
                   "*fetal*", "*fetus*"],
}


@dataclass(frozen=True)
class SegmenterConfig(Validated):
    """Target-domain segmenter: which frames, which classes, the network and its training."""

    domain: str = ""  # the target domain (profile name); "" = the only domain with label maps, or an error
    image_size: PosInt = 128
    train_split: str = "train"
    val_split: str = "val"
    max_frames: NonNegInt = 0  # 0 = all training frames; else an evenly spaced subset (for quick runs)
    labels_json: str = ""  # "" = look in the dataset (and the folders its dataset.json names)
    classes: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GROUPS))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)


def read_manifest(dataset_dir: str | Path, split: str) -> pd.DataFrame:
    """``manifest_<split>.csv`` of a prepared dataset, with a clear error when it is missing or lacks columns."""
    path = Path(dataset_dir) / f"manifest_{split}.csv"
    if not path.is_file():
        raise SonoshiftError(f"prepared dataset {dataset_dir} has no {path.name} (run `sonoshift prepare` first).")
    df = pd.read_csv(path, dtype={"patient_id": str, "video_id": str, "domain": str}, keep_default_na=True)
    missing = [c for c in ("domain", "path", "label_path") if c not in df.columns]
    if missing:
        raise SonoshiftError(f"manifest {path} lacks the column(s) {', '.join(missing)}.")
    return df


def pick_domain(df: pd.DataFrame, domain: str, source: str) -> str:
    """The requested domain, or the only domain with label maps when ``domain`` is empty."""
    labelled = sorted(df.loc[df["label_path"].notna(), "domain"].unique())
    if domain:
        if domain not in set(df["domain"]):
            raise SonoshiftError(f"{source} has no domain '{domain}' (domains: {', '.join(sorted(set(df['domain'])))}).")
        return domain
    if len(labelled) != 1:
        raise SonoshiftError(f"{source} has label maps in domains {labelled}: choose one with domain=<name>.")
    return labelled[0]


def load_labelled_frames(
    dataset_dir: str | Path, split: str, domain: str, lut: np.ndarray, max_frames: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
    """Frames (uint8 (H, W)) and merged label maps (uint8 class ids) of one split and domain, with their rows."""
    root = Path(dataset_dir)
    df = read_manifest(root, split)
    rows = df[(df["domain"] == domain) & df["label_path"].notna()].reset_index(drop=True)
    if max_frames and len(rows) > max_frames:
        rows = rows.iloc[np.linspace(0, len(rows) - 1, max_frames).round().astype(int)].reset_index(drop=True)
    images = [read_gray(root / p) for p in rows["path"]]
    labels = [lut[read_labels(root / p)] for p in rows["label_path"]]
    for img, lab, p in zip(images, labels, rows["label_path"]):
        if img.shape != lab.shape:
            raise SonoshiftError(f"label map {root / p} is {lab.shape} but its frame is {img.shape}.")
    return images, labels, rows


def resolve_classes(dataset_dir: str | Path, cfg: SegmenterConfig) -> tuple[tuple[str, ...], np.ndarray]:
    """Merged class names and the source-id lookup table for this dataset (labels.json found or given)."""
    path = Path(cfg.labels_json) if cfg.labels_json else find_labels_json(dataset_dir)
    names = read_label_names(path) if path is not None else {}
    if not names and any(not str(p).isdigit() for pats in cfg.classes.values() for p in (pats or ())):
        raise SonoshiftError(
            f"no labels.json found for {dataset_dir}: give labels_json=<path> or class groups as integer ids."
        )
    return class_lookup(cfg.classes, names)


def mean_dice(seg: Segmenter, images: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """Mean Dice per foreground class (NaN-skipping) and over classes ("mean") on labelled frames."""
    preds = predict(seg, images)
    d = np.array([dice_per_class(p, lab, seg.num_classes) for p, lab in zip(preds, labels)])
    with warnings.catch_warnings():  # a class absent from every frame has an all-NaN column: its mean is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per = np.nanmean(d, axis=0) if len(d) else np.full(seg.num_classes - 1, np.nan)
    out = {name: float(v) for name, v in zip(seg.classes[1:], per)}
    out["mean"] = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
    return out


def train_target_segmenter(
    dataset_dir: str | Path,
    out_dir: str | Path,
    cfg: SegmenterConfig,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Segmenter:
    """Train on ``cfg.domain`` frames of ``dataset_dir``'s train split, validate, write the checkpoint to ``out_dir``.

    The checkpoint's info holds the source dataset, domain, frame counts, class pixel fractions, validation
    Dice per class, and ``label_lut`` (256 ints: source label id -> class id) so evaluation needs no labels.json. Returns the trained ``Segmenter`` (model on ``device``).
    """
    root = Path(dataset_dir)
    splits = verify_split(root, cfg.train_split)  # leakage check at this read of a split
    classes, lut = resolve_classes(root, cfg)
    domain = pick_domain(read_manifest(root, cfg.train_split), cfg.domain, str(root / f"manifest_{cfg.train_split}.csv"))
    images, labels, _ = load_labelled_frames(root, cfg.train_split, domain, lut, cfg.max_frames)
    if not images:
        raise SonoshiftError(f"prepared dataset {root} has no labelled '{domain}' frames in split {cfg.train_split}.")
    x = frames_to_input(images, cfg.image_size).to(device)
    y = labels_to_target(labels, cfg.image_size).to(device)
    seg = train_segmenter(
        x, y, classes, cfg.model, cfg.train, config=to_dict(cfg), progress=progress, description="train segmenter"
    )
    counts = np.bincount(y.cpu().numpy().ravel(), minlength=len(classes))
    info = dict(seg.info, dataset=str(root.resolve()), domain=domain, label_lut=lut.tolist(),
                class_fraction={c: float(v) for c, v in zip(classes, counts / counts.sum())})
    if splits is not None:  # so that scoring a run on the segmenter's own training patients is refused
        info["training_split"] = split_record(splits, cfg.train_split)
    if (root / f"manifest_{cfg.val_split}.csv").is_file():
        vi, vl, _ = load_labelled_frames(root, cfg.val_split, domain, lut)
        if vi:
            info["val_frames"] = len(vi)
            info["val_dice"] = mean_dice(seg, vi, vl)
    seg = Segmenter(model=seg.model, classes=seg.classes, image_size=seg.image_size, config=seg.config, info=info)
    save_segmenter(seg, out_dir)
    return seg
