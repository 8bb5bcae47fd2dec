"""Fetal-head proxies on images without masks: FETAL_PLANES_DB trans-thalamic heads per machine, raw and harmonized.

There is no reference mask, so the HC18 segmenter's output is judged by what a good head mask looks like: one
component, close to an ellipse (ellipse IoU near 1), a plausible area, and a head circumference that should not
change when only the scanner's look changes. ``evaluate_heads_fpdb`` measures the original images per machine;
``evaluate_heads_run`` measures a translation run's source frames and their harmonized outputs side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_dir, atomic_write_text
from sonoshift.downstream.evaluate_seg import read_run
from sonoshift.runs import resolve
from sonoshift.downstream.hc18 import head_proxies
from sonoshift.io.images import read_gray, write_png
from sonoshift.downstream.segmenter import load_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.progress import track

PROXY_COLUMNS = ("area_fraction", "ellipse_iou", "components", "hc_px", "hc_frac")


def fpdb_transthalamic(data_root: str | Path) -> pd.DataFrame:
    """FETAL_PLANES_DB trans-thalamic brain images present on disk: image_path, machine, patient, name."""
    root = Path(data_root) / "fetal_planes_db"
    index = root / "index.csv"
    if not index.is_file():
        raise SonoshiftError(f"FETAL_PLANES_DB index {index} does not exist (expected ../shared/data/fetal_planes_db).")
    df = pd.read_csv(index)
    need = {"Plane", "Brain_plane", "US_Machine", "path", "Image_name", "Patient_num"}
    if not need <= set(df.columns):
        raise SonoshiftError(f"FETAL_PLANES_DB index {index} lacks columns {sorted(need - set(df.columns))}.")
    sel = df[(df["Plane"] == "Fetal brain") & (df["Brain_plane"] == "Trans-thalamic")]
    out = pd.DataFrame({
        "image_path": [str(root / p) for p in sel["path"]],
        "machine": sel["US_Machine"].astype(str).values,
        "patient_id": sel["Patient_num"].astype(str).values,
        "name": sel["Image_name"].astype(str).values,
    })
    return out[[Path(p).is_file() for p in out["image_path"]]].reset_index(drop=True)


def fov_crop(img: np.ndarray, name: str) -> np.ndarray:
    """The ultrasound field of view of one image (the data pipeline's single-image crop); the whole image when
    that crop is unavailable or finds nothing."""
    try:
        from sonoshift.data.crop import apply_crop, find_fov
    except ImportError:
        return img
    try:
        return apply_crop(img, find_fov(img, name=name))
    except SonoshiftError:
        return img


def _table_path(path: Path, folder: Path) -> str:
    """``path`` as written into a table in ``folder``: relative to it when inside it (the run's own outputs),
    else absolute, so the table never depends on the directory it was written from."""
    p, base = path.resolve(), folder.resolve()
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p)


def _measure(items: pd.DataFrame, segmenter_ckpt: str | Path, out_csv: Path, progress: bool) -> pd.DataFrame:
    """Proxies for each row (image_path, group, variant, name; variant "cropped" = field of view only);
    masks go to ``<stem>_masks/<variant>/<group>/<name>.png``. In the table, pred_path is relative to the CSV's
    folder and image_path too when the image lies under it (else absolute)."""
    seg = load_segmenter(segmenter_ckpt)
    mask_root = out_csv.parent / f"{out_csv.stem}_masks"
    recs: list[dict[str, Any]] = []
    with atomic_dir(mask_root) as tmp:
        for _, r in track(list(items.iterrows()), "measure heads", disable=not progress):
            img = read_gray(r["image_path"])
            if r["variant"] == "cropped":
                img = fov_crop(img, r["image_path"])
            m = head_proxies(seg, [img])[0]
            rel = Path(str(r["variant"])) / str(r["group"]) / f"{Path(str(r['name'])).stem}.png"
            write_png(tmp / rel, m.pop("mask").astype(np.uint8) * 255)
            rec = {**{k: r[k] for k in items.columns}, **m, "pred_path": (Path(mask_root.name) / rel).as_posix()}
            rec["image_path"] = _table_path(Path(str(r["image_path"])), out_csv.parent)
            recs.append(rec)
    table = pd.DataFrame.from_records(recs)
    table["head_found"] = table["hc_px"].notna()
    atomic_write_text(out_csv, table.to_csv(index=False))
    return table


def evaluate_heads_fpdb(
    data_root: str | Path,
    segmenter_ckpt: str | Path,
    out_csv: str | Path,
    crop: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Head proxies on the original FETAL_PLANES_DB trans-thalamic images, group = machine.

    Variant "raw" is the whole image (vendor text and margins included); with ``crop`` also "cropped", the
    field of view found by the data pipeline's single-image crop. Writes ``out_csv`` (one row per image and
    variant: proxies + pred_path) and the head masks (PNG 0/255) next to it.
    """
    items = fpdb_transthalamic(data_root).rename(columns={"machine": "group"})
    if items.empty:
        raise SonoshiftError(f"no trans-thalamic images found under {Path(data_root) / 'fetal_planes_db'}.")
    variants = ["raw", "cropped"] if crop else ["raw"]
    items = pd.concat([items.assign(variant=v) for v in variants], ignore_index=True)
    return _measure(items, segmenter_ckpt, Path(out_csv), progress)


def evaluate_heads_run(
    run_dir: str | Path,
    segmenter_ckpt: str | Path,
    out_csv: str | Path | None = None,
    plane_contains: str = "",
    progress: bool = True,
) -> pd.DataFrame:
    """Head proxies on a translation run: each source frame ("source") and its output ("harmonized").

    ``group`` is the run's source domain (run.json). ``plane_contains`` keeps rows whose plane label (outputs.csv
    column ``plane``, else looked up in the prepared manifests by source path) contains that text, case-blind;
    "" keeps all rows. Default CSV: ``RUN/heads.csv``.
    """
    run = Path(run_dir)
    meta, df, data_root = read_run(run)
    if plane_contains:
        if "plane" not in df.columns:
            planes: dict[str, str] = {}
            for m in sorted(Path(data_root).glob("manifest_*.csv")):
                man = pd.read_csv(m)
                if {"path", "plane"} <= set(man.columns):
                    planes.update(zip(man["path"].astype(str), man["plane"].astype(str)))
            df["plane"] = [planes.get(str(p), "") for p in df["source_path"]]
        df = df[df["plane"].astype(str).str.contains(plane_contains, case=False, regex=False)]
    group = str(meta.get("source_domain", "") or "source")
    rows = []
    for i, r in df.iterrows():
        name = f"{r.get('patient_id', '')}_{r.get('video_id', '')}_{r.get('frame_index', i)}"
        for variant, path in (("source", resolve(r["source_path"], data_root)), ("harmonized", run / str(r["output_path"]))):
            if path is not None:
                rows.append({"image_path": str(path), "group": group, "variant": variant, "name": name})
    if not rows:
        raise SonoshiftError(f"translation run {run} has no frames to measure (plane filter '{plane_contains}').")
    out = Path(out_csv) if out_csv is not None else run / "heads.csv"
    return _measure(pd.DataFrame(rows), segmenter_ckpt, out, progress)


def summarize_heads(table: pd.DataFrame) -> pd.DataFrame:
    """Per (group, variant) — and per method when the table has a ``method`` column (empty cells = "") —:
    count, head-found rate, mean and std of each proxy (NaN-skipping)."""
    keys = ["group", "variant"]
    if "method" in table.columns:
        table = table.assign(method=table["method"].fillna("").astype(str))
        keys.append("method")
    g = table.groupby(keys, sort=False)
    out = g.size().rename("images").to_frame()
    out["head_found_rate"] = g["head_found"].mean()
    for c in PROXY_COLUMNS:
        out[f"{c}_mean"] = g[c].mean()
        out[f"{c}_std"] = g[c].std(ddof=0)
    return out.reset_index()
