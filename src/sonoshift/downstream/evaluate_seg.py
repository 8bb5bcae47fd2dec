"""Downstream segmentation on a translation run: Dice and HD95 of source frames before and after harmonization.

The target-domain segmenter is applied to each source frame as it is ("source"), to its harmonized output
("harmonized") and, where the run has one, to the simulator's ground truth in the target profile
("ground_truth": what a perfect harmonizer would give, an upper bound). Every prediction is scored against the
source frame's label map (the same anatomy in all three), restricted to the field of view when the run names a
mask. A harmonizer helps the segmenter when "harmonized" scores closer to "ground_truth" than "source" does.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_dir, atomic_write_text
from sonoshift.io.images import read_gray, write_png
from sonoshift.io.labels import read_labels
from sonoshift.downstream.segmenter import Segmenter, load_segmenter, predict
from sonoshift.errors import SonoshiftError
from sonoshift.metrics.segmentation import dice_per_class, hd95_per_class
from sonoshift.outputs import Batch
from sonoshift.progress import track
from sonoshift.runs import open_run, resolve

VARIANTS = (("source", "source_path"), ("harmonized", "output_path"), ("ground_truth", "gt_path"))


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame, Path]:
    """``run.json`` (empty if absent), ``outputs.csv`` and the folder that non-output paths are relative to
    (read by ``sonoshift.runs``)."""
    folder = open_run(run_dir, require_info=False)
    return folder.info, folder.outputs_frame(("output_path", "source_path", "label_path")), folder.dataset_root


def label_lut(seg: Segmenter) -> np.ndarray:
    """(256,) uint8: label-map id -> the segmenter's class id (its training ``label_lut``; else ids clipped)."""
    lut = seg.info.get("label_lut")
    if lut is None:  # a segmenter trained on labels that already are class ids
        return np.minimum(np.arange(256), seg.num_classes - 1).astype(np.uint8)
    return np.asarray(lut, dtype=np.uint8)


def _frame_key(row: pd.Series, i: int) -> Path:
    parts = [str(row.get("patient_id", "") or ""), str(row.get("video_id", "") or "")]
    fi = row.get("frame_index")
    name = f"{int(fi):05d}.png" if fi is not None and not pd.isna(fi) else f"{i:05d}.png"
    return Path(*[p for p in parts if p and p != "nan"], name)


def _read_row(row: pd.Series, i: int, run: Path, data_root: Path, lut: np.ndarray,
              variants: list[tuple[str, str]]) -> dict[str, Any] | None:
    """One outputs.csv row -> its label map (segmenter class ids), field-of-view mask (or None) and the frames of
    each variant at the label's size; None when the row has no label to score against."""
    label_file = resolve(row["label_path"], data_root)
    if label_file is None:
        return None
    label = lut[read_labels(label_file)]
    fov_file = resolve(row.get("mask_path"), data_root)
    fov = read_labels(fov_file) > 0 if fov_file is not None else None
    if fov is not None and fov.shape != label.shape:
        fov = cv2.resize(fov.astype(np.uint8), label.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    frames = []
    for variant, col in variants:
        path = run / str(row[col]) if col == "output_path" else resolve(row[col], data_root)
        if path is None or (col == "output_path" and pd.isna(row[col])):
            continue
        img = read_gray(path)
        if img.shape != label.shape:
            img = cv2.resize(img, label.shape[::-1], interpolation=cv2.INTER_AREA)
        frames.append((variant, path, img))
    return {"row": row, "index": i, "key": _frame_key(row, i), "label": label, "fov": fov, "frames": frames}


def evaluate_segmentation(
    run_dir: str | Path,
    segmenter_ckpt: str | Path,
    out_csv: str | Path | None = None,
    *,
    batch_size: int = 16,
    progress: bool = True,
    batch: Batch | None = None,
) -> pd.DataFrame:
    """Per-frame Dice and HD95 (pixels) for each variant of each frame of a translation run; writes CSV + masks.

    ``run_dir``: a translation run (docs/formats.md §3) whose outputs.csv has output_path, source_path and
    label_path (gt_path and mask_path are used when present). ``segmenter_ckpt``: a folder from
    ``save_segmenter``. ``out_csv``: where the table goes (default ``RUN/segmentation.csv``); the predicted masks
    (PNG, class ids) go to ``<out_csv stem>_masks/<variant>/<patient>/<video>/<frame>.png`` next to it.

    Returns one row per (frame, variant) with columns method, variant, patient_id, video_id, frame_index,
    image_path, pred_path (relative to the CSV's folder), dice_mean, hd95_mean, then dice_<class> and
    hd95_<class> per foreground class. Means skip classes absent from both prediction and reference.
    ``batch``: write into temporaries of this all-or-nothing group (sonoshift.outputs) instead of in place.
    """
    run = Path(run_dir)
    meta, df, data_root = read_run(run)
    seg = load_segmenter(segmenter_ckpt)
    lut = label_lut(seg)
    out_csv = Path(out_csv) if out_csv is not None else run / "segmentation.csv"
    mask_root = out_csv.parent / f"{out_csv.stem}_masks"
    fg = seg.classes[1:]
    variants = [(v, col) for v, col in VARIANTS if col in df.columns]
    records: list[dict[str, Any]] = []
    staged = contextlib.nullcontext(batch.path(mask_root, folder=True)) if batch is not None else None
    with staged or atomic_dir(mask_root) as tmp_masks:
        rows = list(df.iterrows())
        for start in track(range(0, len(rows), batch_size), "segment run frames", disable=not progress):
            chunk = [_read_row(row, int(i), run, data_root, lut, variants) for i, row in rows[start : start + batch_size]]
            chunk = [c for c in chunk if c is not None]
            preds = iter(predict(seg, [img for c in chunk for _, _, img in c["frames"]], batch_size))
            for c in chunk:
                for variant, path, _ in c["frames"]:
                    pred = next(preds)
                    if c["fov"] is not None:
                        pred = np.where(c["fov"], pred, 0).astype(np.uint8)
                    d = dice_per_class(pred, c["label"], seg.num_classes)
                    h = hd95_per_class(pred, c["label"], seg.num_classes)
                    rel = Path(variant) / c["key"]
                    write_png(tmp_masks / rel, pred)
                    row = c["row"]
                    rec: dict[str, Any] = {
                        "method": meta.get("method", ""),
                        "variant": variant,
                        "patient_id": row.get("patient_id", ""),
                        "video_id": row.get("video_id", ""),
                        "frame_index": row.get("frame_index", c["index"]),
                        "image_path": str(path),
                        "pred_path": (Path(mask_root.name) / rel).as_posix(),
                        "dice_mean": float(np.nanmean(d)) if np.isfinite(d).any() else math.nan,
                        "hd95_mean": float(np.nanmean(h)) if np.isfinite(h).any() else math.nan,
                    }
                    rec.update({f"dice_{c_}": float(v) for c_, v in zip(fg, d)})
                    rec.update({f"hd95_{c_}": float(v) for c_, v in zip(fg, h)})
                    records.append(rec)
        if not records:
            raise SonoshiftError(f"translation run {run} has no frames with a label_path to score.")
    table = pd.DataFrame.from_records(records)
    if batch is not None:
        batch.path(out_csv).write_text(table.to_csv(index=False), encoding="utf-8")
    else:
        atomic_write_text(out_csv, table.to_csv(index=False))
    return table


def summarize_segmentation(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of every dice_*/hd95_* column per (method, variant): one row per group, columns <metric>_mean/_std."""
    cols = [c for c in table.columns if c.startswith(("dice_", "hd95_"))]
    g = table.groupby(["method", "variant"], sort=False)[cols]
    mean, std = g.mean().add_suffix("_mean"), g.std(ddof=0).add_suffix("_std")
    return pd.concat([mean, std], axis=1).reset_index()
