"""Fetal-head segmenter on real data: train on HC18, validate (Dice, HC error in mm), and measure heads elsewhere.

HC18 (``../shared/data/hc18``) gives head images with filled-ellipse masks, the pixel size and the head
circumference (HC) in mm. The segmenter is a two-class U-Net (background, head) trained at a small square size;
predictions are resized back to each image's own size, the largest head component is fitted with an ellipse,
and the ellipse perimeter times the pixel size is the predicted HC. On images without masks (FETAL_PLANES_DB
trans-thalamic heads, raw or harmonized) the same fit gives proxies: mask area fraction, IoU between the mask
and its fitted ellipse (a clean head is an ellipse), and the HC in pixels and as a fraction of the image perimeter.
The files are read directly with the small code below (subjects split by the number before ``_``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch

from sonoshift.atomic import atomic_write_text
from sonoshift.config import ConfigValueError, NonNegInt, PosFloat, PosInt, Range, Seed, Validated, to_dict
from sonoshift.downstream.ellipse import head_measurements
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels
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
from sonoshift.seeding import numpy_rng

HEAD_CLASSES = ("background", "head")


@dataclass(frozen=True)
class PolarSpec(Validated):
    """The polar refiner of the GA estimator (judges/ga/polar_refiner.py; used when ``head_polar``): the strip
    (``angles`` rays, ``radii`` samples from ``s_min`` to ``s_max`` x the estimated outline), the training
    perturbation of the reference ellipse (centre ``shift`` x mean semi-axis, semi-axes log-normal ``size``, angle
    ``turn_deg``), and how it is applied (``iterations`` rounds, flip averaging ``tta``, weight ``blend`` of its
    ellipse against the one it started from)."""

    angles: Annotated[int, Range(8, 4096)] = 128
    radii: Annotated[int, Range(8, 4096)] = 96
    s_min: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.75
    s_max: Annotated[float, Range(1, 4, lo_open=True)] = 1.25
    shift: Annotated[float, Range(0, 0.5)] = 0.03
    size: Annotated[float, Range(0, 0.5)] = 0.05
    turn_deg: Annotated[float, Range(0, 90)] = 6.0
    iterations: Annotated[int, Range(1, 10)] = 2
    tta: bool = True
    blend: Annotated[float, Range(0, 1)] = 0.5


@dataclass(frozen=True)
class Hc18Config(Validated):
    """HC18 head segmenter: data location, held-out split, network and training."""

    data_dir: str = "../shared/data/hc18"
    image_size: PosInt = 128
    val_fraction: Annotated[float, Range(0, 1, hi_open=True)] = 0.2
    split_seed: Seed = 0
    max_images: NonNegInt = 0  # 0 = all; else the first N subjects' images in file order (quick runs and tests)
    # k-fold cross-validation: folds > 0 holds out the fold-th of ``folds`` near-equal subject groups (seeded by
    # split_seed) instead of a val_fraction share
    folds: NonNegInt = 0
    fold: NonNegInt = 0
    # learning curves: train on a seeded share of the training subjects (the held-out subjects are unchanged)
    train_fraction: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    # head_crops > 0 trains a crop refiner for the GA estimator (judges/ga/head_crop.py) instead of a whole-frame
    # segmenter: that many random head-centred squares per training image, side 2 m a (m uniform in crop_margin,
    # a the reference ellipse's long semi-axis), centre moved by up to crop_shift x side; used at inference with
    # m = the middle of crop_margin around the first stage's ellipse
    head_crops: NonNegInt = 0
    crop_margin: tuple[PosFloat, PosFloat] = (1.15, 1.45)
    crop_shift: Annotated[float, Range(0, 0.5)] = 0.05
    # crops per image x density(HC)^-size_balance (mean kept): rare head sizes (the third trimester) seen as
    # often as common ones; 0 = head_crops crops of every image (judges/ga/head_crop.py size_balanced_counts)
    size_balance: Annotated[float, Range(0, 2)] = 0.0
    # heads cut by the image border (judges/ga/border_cut.py): that share of the training images (whole-frame
    # segmenters and crop refiners; of the polar refiner's strips) also gets a copy whose border cuts off up to
    # cut_max of the head's extent on a random side; the label is the head's visible part (polar: a ray whose
    # outline left the image is asked for the border), so the network draws the head up to the border
    cut_heads: Annotated[float, Range(0, 1)] = 0.0
    cut_max: Annotated[float, Range(0, 0.9, lo_open=True)] = 0.4
    # whole-frame segmenters and crop refiners: that many independent draws of cut copies (each a fresh cut and side;
    # the first draw is the one a single copy gets), so a network for heads at the border sees many cuts
    cut_copies: Annotated[int, Range(1, 8)] = 1
    # amodal: a cut copy is labelled with the whole head, also beyond its new border, so the network draws where a
    # cut head runs on outside the frame (the fit then uses that arc too); a whole-frame segmenter sees every frame
    # on a canvas with canvas_pad of its height and width added as zeros on each side (border_cut.amodal_canvas),
    # a crop refiner needs none (its crops are zero outside the frame already)
    amodal: bool = False
    canvas_pad: Annotated[float, Range(0, 1)] = 0.25
    # head_polar trains the GA estimator's polar refiner (a third look along rays of the estimated ellipse at native
    # resolution; judges/ga/polar_refiner.py, settings in ``polar``) instead of a segmenter; train.steps,
    # batch_size, lr, weight_decay, seed, gamma, noise_std and hflip apply to it
    head_polar: bool = False
    polar: PolarSpec = field(default_factory=PolarSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.folds and self.fold >= self.folds:
            raise ConfigValueError("fold", f"must be below folds ({self.folds}), got {self.fold}")
        if self.folds == 1:
            raise ConfigValueError("folds", "must be 0 (no cross-validation) or at least 2, got 1")
        if self.head_polar and self.amodal:
            raise ConfigValueError("amodal", "a polar refiner drops the rays that leave the image instead (cut_heads); "
                                   "amodal is for whole-frame segmenters and crop refiners")
        if self.head_polar and self.head_crops:
            raise ConfigValueError("head_polar", "a config trains either a crop refiner (head_crops) or a polar "
                                   "refiner (head_polar), not both")
        step = math.prod(self.model.strides)
        if self.head_polar and (self.polar.radii % step or self.polar.angles % step):
            raise ConfigValueError("polar", f"radii and angles must be multiples of the U-Net's total stride {step} "
                                   f"(model.strides), got radii {self.polar.radii} and angles {self.polar.angles}")
        if not 1.0 <= self.crop_margin[0] <= self.crop_margin[1]:
            raise ConfigValueError("crop_margin", f"must be (lo, hi) with 1 <= lo <= hi, got {self.crop_margin}")


def load_hc18_table(data_dir: str | Path) -> pd.DataFrame:
    """One row per HC18 image present: filename, subject, image_path, mask_path, pixel_size_mm, hc_mm.

    Reads ``included_subset.csv`` (or ``training_set_pixel_size_and_HC.csv`` limited to files present).
    """
    root = Path(data_dir)
    images = root / "training_set"
    if not images.is_dir():
        what = "does not exist (an HC18 folder holds training_set/)" if not root.exists() else "has no training_set/"
        raise SonoshiftError(f"HC18 folder {root} {what}: point --data-root "
                             f"(data_dir in a config) at the folder that holds hc18/ (from the project root, "
                             f"../shared/data).")
    table = root / "included_subset.csv"
    if not table.is_file():
        table = root / "training_set_pixel_size_and_HC.csv"
    if not table.is_file():
        raise SonoshiftError(f"HC18 folder {root} has no included_subset.csv or training_set_pixel_size_and_HC.csv.")
    df = pd.read_csv(table)
    cols = {c.lower(): c for c in df.columns}
    try:
        fn, px, hc = cols["filename"], cols["pixel size(mm)"], cols["head circumference (mm)"]
    except KeyError:
        raise SonoshiftError(f"HC18 table {table} lacks filename / pixel size(mm) / head circumference (mm).") from None
    out = pd.DataFrame({
        "filename": df[fn].astype(str),
        "pixel_size_mm": df[px].astype(float),
        "hc_mm": df[hc].astype(float),
    })
    out["image_path"] = [str(images / f) for f in out["filename"]]
    out["mask_path"] = [str(images / f.replace(".png", "_Annotation.png")) for f in out["filename"]]
    out = out[[Path(p).is_file() and Path(m).is_file() for p, m in zip(out["image_path"], out["mask_path"])]]
    if out.empty:
        raise SonoshiftError(f"HC18 folder {images} holds none of the images listed in {table.name}.")
    out["subject"] = [re.match(r"(\d+)", f).group(1) if re.match(r"(\d+)", f) else f for f in out["filename"]]
    return out.reset_index(drop=True)


def split_subjects(subjects: pd.Series, val_fraction: float, seed: int, folds: int = 0, fold: int = 0) -> np.ndarray:
    """Boolean array, True for validation rows: a seeded ``val_fraction`` of the distinct subjects (>= 1); with
    ``folds`` > 0 instead the ``fold``-th of ``folds`` near-equal groups of the seeded subject permutation (the
    folds partition the subjects)."""
    uniq = np.array(sorted(set(subjects)))
    if folds:
        val = set(np.array_split(numpy_rng(seed).permutation(uniq), folds)[fold])
        return np.array([s in val for s in subjects])
    n_val = max(1, round(len(uniq) * val_fraction)) if val_fraction > 0 else 0
    val = set(numpy_rng(seed).permutation(uniq)[:n_val])
    return np.array([s in val for s in subjects])


def subject_share(subjects: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Boolean array, True for the rows of a seeded ``fraction`` of the distinct subjects (at least one; all when
    ``fraction`` is 1). The shares are nested: a subject kept at 0.5 is also kept at 0.75."""
    if fraction >= 1:
        return np.ones(len(subjects), bool)
    # the same seeded permutation prefix as the held-out split, drawn with its own seed
    return split_subjects(subjects, fraction, seed + 1)


def head_mask(seg: Segmenter, pred: np.ndarray) -> np.ndarray:
    """Boolean head mask from a label map of ``seg`` (the class named "head", else every foreground class)."""
    if "head" in seg.classes:
        return pred == seg.classes.index("head")
    return pred > 0


def validate_hc18(seg: Segmenter, rows: pd.DataFrame, batch_size: int = 16) -> pd.DataFrame:
    """Per image at native size: Dice, predicted HC (mm), HC from the reference mask's own ellipse, errors in mm."""
    from sonoshift.metrics.segmentation import dice_per_class

    recs = []
    for start in range(0, len(rows), batch_size):
        chunk = rows.iloc[start : start + batch_size]
        frames = [read_gray(p) for p in chunk["image_path"]]
        preds = predict(seg, frames, batch_size)
        for (_, r), pred in zip(chunk.iterrows(), preds):
            ref = read_labels(r["mask_path"]) > 127
            pm = head_mask(seg, pred)
            dice = dice_per_class(pm.astype(np.uint8), ref.astype(np.uint8), 2)[0]
            m_pred = head_measurements(pm, r["pixel_size_mm"])
            m_ref = head_measurements(ref, r["pixel_size_mm"])
            recs.append({
                "filename": r["filename"],
                "dice": float(dice),
                "hc_mm": r["hc_mm"],
                "hc_pred_mm": m_pred["hc_mm"],
                "hc_abs_err_mm": abs(m_pred["hc_mm"] - r["hc_mm"]),
                "hc_ref_fit_mm": m_ref["hc_mm"],
                "hc_ref_fit_err_mm": abs(m_ref["hc_mm"] - r["hc_mm"]),
                "ellipse_iou": m_pred["ellipse_iou"],
            })
    return pd.DataFrame.from_records(recs)


def summarize_validation(val: pd.DataFrame) -> dict[str, float]:
    """Mean/median Dice and HC errors (mm) of a ``validate_hc18`` table; NaN HC (nothing found) counted apart."""
    err = val["hc_abs_err_mm"]
    return {
        "images": int(len(val)),
        "dice_mean": float(val["dice"].mean()),
        "dice_median": float(val["dice"].median()),
        "hc_abs_err_mm_mean": float(err.mean()),
        "hc_abs_err_mm_median": float(err.median()),
        "hc_abs_err_mm_std": float(err.std(ddof=0)),
        "hc_missed": int(err.isna().sum()),
        "hc_ref_fit_err_mm_mean": float(val["hc_ref_fit_err_mm"].mean()),
    }


def train_hc18_segmenter(
    cfg: Hc18Config, out_dir: str | Path, device: str | torch.device = "cpu", progress: bool = True
) -> tuple[Segmenter, pd.DataFrame]:
    """Train the head segmenter on HC18's training subjects, validate on the held-out ones, save to ``out_dir``.

    Returns the segmenter (its ``info`` holds the validation summary) and the per-image validation table, which
    is also written to ``out_dir/validation.csv``.
    """
    rows = load_hc18_table(cfg.data_dir)
    if cfg.max_images:
        rows = rows.iloc[: cfg.max_images].reset_index(drop=True)
    is_val = split_subjects(rows["subject"], cfg.val_fraction, cfg.split_seed, cfg.folds, cfg.fold)
    train_rows, val_rows = rows[~is_val], rows[is_val]
    train_rows = train_rows[subject_share(train_rows["subject"], cfg.train_fraction, cfg.split_seed)]
    if train_rows.empty:
        raise SonoshiftError(f"HC18 folder {cfg.data_dir}: no training images left after the validation split.")
    frames = [read_gray(p) for p in train_rows["image_path"]]
    masks = [(read_labels(p) > 127).astype(np.uint8) for p in train_rows["mask_path"]]
    if cfg.head_polar:
        return _train_polar(cfg, out_dir, train_rows, val_rows, frames, masks, device, progress)
    from sonoshift.judges.ga.border_cut import amodal_canvas, crop_to_cut, cut_copies, zero_cut

    cuts = cut_copies(len(frames), cfg.cut_heads, cfg.cut_max, cfg.cut_copies, numpy_rng(cfg.train.seed, 2))
    if cfg.head_crops:
        from sonoshift.judges.ga.head_crop import size_balanced_counts, training_crops

        g = torch.Generator().manual_seed(int(cfg.train.seed) + 1)
        counts = size_balanced_counts(train_rows["hc_mm"], cfg.head_crops, cfg.size_balance)
        # a cut copy is blacked out beyond its border (a crop is zero outside the frame); its crops are placed by
        # the whole head, as a first stage that finds the cut head places them
        # (amodal: labelled by the whole head)
        x, y = training_crops(frames + [zero_cut(frames[i], masks[i], *c) for i, c in cuts],
                              masks + [masks[i] if cfg.amodal else zero_cut(masks[i], masks[i], *c) for i, c in cuts],
                              cfg.image_size, counts + [counts[i] for i, _ in cuts], cfg.crop_margin, cfg.crop_shift,
                              g, ref_masks=masks + [masks[i] for i, _ in cuts])
        x, y = x.to(device), y.to(device)
    elif cfg.amodal:
        pairs = [amodal_canvas(f, m, cfg.canvas_pad) for f, m in zip(frames, masks)]
        pairs += [amodal_canvas(frames[i], masks[i], cfg.canvas_pad, *c) for i, c in cuts]
        x = frames_to_input([f for f, _ in pairs], cfg.image_size).to(device)
        y = labels_to_target([m for _, m in pairs], cfg.image_size).to(device)
    else:
        x = frames_to_input(frames + [crop_to_cut(frames[i], masks[i], *c) for i, c in cuts],
                            cfg.image_size).to(device)
        y = labels_to_target(masks + [crop_to_cut(masks[i], masks[i], *c) for i, c in cuts],
                             cfg.image_size).to(device)
    seg = train_segmenter(x, y, HEAD_CLASSES, cfg.model, cfg.train, config=to_dict(cfg), progress=progress,
                          description="train HC18 head " + ("crop refiner" if cfg.head_crops else "segmenter"))
    # a crop refiner needs a first stage to place its crops, an amodal segmenter its canvas: `ga build` validates
    # them inside the GA estimator
    val = validate_hc18(seg, val_rows) if len(val_rows) and not (cfg.head_crops or cfg.amodal) else pd.DataFrame()
    info = dict(seg.info, dataset="hc18", train_images=len(train_rows), cut_copies=len(cuts),
                val_files=list(val_rows["filename"]), label_lut=[0] * 128 + [1] * 128)
    if cfg.head_crops:
        info["head_crop"] = {"margin": 0.5 * (cfg.crop_margin[0] + cfg.crop_margin[1]),
                             "train_crops": int(len(x))}
    if len(val):
        info["validation"] = summarize_validation(val)
    seg = Segmenter(model=seg.model, classes=seg.classes, image_size=seg.image_size, config=seg.config, info=info)
    save_segmenter(seg, out_dir)
    if len(val):
        atomic_write_text(Path(out_dir) / "validation.csv", val.to_csv(index=False))
    return seg, val


def _train_polar(cfg: Hc18Config, out_dir, train_rows, val_rows, frames, masks, device, progress):
    """The polar refiner (judges/ga/polar_refiner.py): saved like a segmenter; `ga build` validates it behind the
    estimator's other stages."""
    from sonoshift.judges.ga.polar_refiner import train_polar_refiner, validate_polar_refiner

    hc_px = list(train_rows["hc_mm"] / train_rows["pixel_size_mm"])
    seg = train_polar_refiner(cfg, frames, masks, hc_px, device, progress)
    # the outline found on strips around moved reference ellipses, training against held-out images: over-fitting
    strips = {"train": validate_polar_refiner(seg, frames, masks)}
    if len(val_rows):
        strips["heldout"] = validate_polar_refiner(seg, [read_gray(p) for p in val_rows["image_path"]],
                                                   [(read_labels(p) > 127).astype(np.uint8)
                                                    for p in val_rows["mask_path"]])
    info = dict(seg.info, dataset="hc18", train_images=len(train_rows), val_files=list(val_rows["filename"]),
                strip_validation=strips)
    seg = Segmenter(model=seg.model, classes=seg.classes, image_size=seg.image_size, config=seg.config, info=info)
    save_segmenter(seg, out_dir)
    return seg, pd.DataFrame()


def head_proxies(seg: Segmenter, frames: list[np.ndarray], batch_size: int = 16) -> list[dict[str, Any]]:
    """Head proxies per uint8 frame (no ground truth): area_fraction, ellipse_iou, components, hc_px, hc_frac.

    ``hc_frac`` is the fitted-ellipse perimeter divided by the image perimeter 2(H + W): comparable across sizes.
    Each dict also carries ``mask`` (bool (H, W)) for overlays.
    """
    out = []
    for pred, f in zip(predict(seg, frames, batch_size), frames):
        m = head_mask(seg, pred)
        meas = head_measurements(m)
        h, w = m.shape
        meas["hc_frac"] = meas["hc_px"] / (2 * (h + w)) if not math.isnan(meas["hc_px"]) else math.nan
        meas["mask"] = m
        out.append(meas)
    return out
