"""Public dataset loaders: each turns a folder of ``../shared/data`` into a DatasetSpec for `prepare`.

- FETAL_PLANES_DB (Burgos-Artizzu et al. 2020): domain = US_Machine, patient = Patient_num, plane label.
- African planes (Sendra-Balcells et al. 2023): domain = Center, patient ``<Center>-<Patient_num>``,
  byte-identical files de-duplicated by content hash before splitting.
- HC18 (van den Heuvel et al. 2018): pixel size, head circumference, gestational age (Hadlock), head mask as
  an aligned label map.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from sonoshift.data.spec import DatasetSpec, SpecItem
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc


def _dataset_dir(root: str | Path, name: str) -> Path:
    """``root`` itself or ``root/name``, whichever holds the dataset."""
    root = Path(root).expanduser()
    for cand in (root / name, root):
        if cand.is_dir() and (cand.name == name or (cand / "images").is_dir() or (cand / "training_set").is_dir()):
            return cand.resolve()
    raise SonoshiftError(f"dataset folder {root / name} does not exist (set the data root to the shared data folder).")


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    if not path.is_file():
        raise SonoshiftError(f"table {path} does not exist.")
    try:
        df = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise SonoshiftError(f"table {path} is not a readable CSV ({e.__class__.__name__}).") from None
    df.columns = [str(c).strip() for c in df.columns]
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype(str).str.strip()
    return df


def _require(df: pd.DataFrame, cols: Iterable[str], path: Path) -> None:
    for c in cols:
        if c not in df.columns:
            raise SonoshiftError(f"table {path} lacks the column {c!r}.")


def _filter(df: pd.DataFrame, col: str, keep: Sequence[str] | None, what: str) -> pd.DataFrame:
    if keep is None:
        return df
    known = sorted(df[col].unique())
    for k in keep:
        if k not in known:
            raise SonoshiftError(f"{what} {k!r} is not in the table (known: {', '.join(known)}).")
    return df[df[col].isin(list(keep))]


def fetal_planes_db_spec(
    root: str | Path, *, machines: Sequence[str] | None = None, planes: Sequence[str] | None = None
) -> DatasetSpec:
    """FETAL_PLANES_DB as a spec: one item per image present under ``images/``.

    root: the shared data folder or ``fetal_planes_db`` itself. The table is ``index.csv`` when present,
    else ``metadata/FETAL_PLANES_DB_data.csv`` (semicolon-separated). machines / planes: keep only these
    US_Machine / Plane values. Labels: plane, brain_plane, operator, official_train. Patients seen on two
    machines are dropped (they would leak across domains).
    """
    base = _dataset_dir(root, "fetal_planes_db")
    index = base / "index.csv"
    if index.is_file():
        df, table = _read_csv(index), index
    else:
        table = base / "metadata" / "FETAL_PLANES_DB_data.csv"
        df = _read_csv(table, sep=";")
    _require(df, ("Image_name", "Patient_num", "Plane", "US_Machine"), table)
    multi = df.groupby("Patient_num")["US_Machine"].nunique()  # over the whole table, before any filter
    df = df[~df["Patient_num"].isin(multi[multi > 1].index)]
    df = _filter(df, "US_Machine", machines, "US_Machine")
    df = _filter(df, "Plane", planes, "plane")
    df = df.assign(_path=[base / "images" / f"{n}.png" for n in df["Image_name"]])
    df = df[[p.is_file() for p in df["_path"]]]
    if df.empty:
        raise SonoshiftError(f"no FETAL_PLANES_DB image of the selection exists under {base / 'images'}.")
    items = []
    for row in df.sort_values(["US_Machine", "Image_name"]).to_dict("records"):
        labels = {"plane": row["Plane"]}
        for src, dst in (("Brain_plane", "brain_plane"), ("Operator", "operator"), ("Train", "official_train")):
            if src in row:
                labels[dst] = row[src]
        items.append(
            SpecItem(
                path=row["_path"],
                domain=str(row["US_Machine"]),
                patient_id=f"{int(row['Patient_num']):05d}",
                video_id=str(row["Image_name"]),
                labels=labels,
            )
        )
    return DatasetSpec(items=tuple(items), name="fetal_planes_db", source=str(table))


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dedupe_by_content(paths: Sequence[Path]) -> tuple[list[Path], dict[Path, Path]]:
    """Keep the first of every group of byte-identical files (in the given order).

    Returns (kept paths in order, {dropped duplicate: the kept file it equals}).
    """
    first: dict[str, Path] = {}
    kept, dropped = [], {}
    for p in paths:
        h = content_hash(p)
        if h in first:
            dropped[p] = first[h]
        else:
            first[h] = p
            kept.append(p)
    return kept, dropped


def african_planes_spec(root: str | Path, *, centers: Sequence[str] | None = None) -> DatasetSpec:
    """The African five-centre planes set as a spec: domain = Center, patient ``<Center>-<Patient_num>``
    (numbers repeat across centres), label plane; byte-identical images are kept once (first by centre,
    patient, name)."""
    base = _dataset_dir(root, "african_planes")
    table = base / "African_train.csv"
    df = _read_csv(table)
    _require(df, ("Patient_num", "Plane", "Center", "Image_name"), table)
    df = _filter(df, "Center", centers, "Center")
    df = df.assign(_path=[base / "images" / f"{n}.png" for n in df["Image_name"]])
    df = df[[p.is_file() for p in df["_path"]]].sort_values(["Center", "Patient_num", "Image_name"])
    if df.empty:
        raise SonoshiftError(f"no African planes image of the selection exists under {base / 'images'}.")
    kept, _ = dedupe_by_content(list(df["_path"]))
    keep = set(kept)
    items = []
    for row in df.to_dict("records"):
        if row["_path"] not in keep:
            continue
        items.append(
            SpecItem(
                path=row["_path"],
                domain=str(row["Center"]),
                patient_id=f"{row['Center']}-{int(row['Patient_num'])}",
                video_id=str(row["Image_name"]),
                labels={"plane": row["Plane"], **({"official_train": row["Train"]} if "Train" in row else {})},
            )
        )
    return DatasetSpec(items=tuple(items), name="african_planes", source=str(table))


def hc18_spec(root: str | Path, *, domain: str = "hc18") -> DatasetSpec:
    """HC18 training images present under ``training_set/`` as a single-domain spec.

    Labels: pixel_size_mm (mm per source pixel; `prepare` rescales it to the prepared pixel), hc_mm (head
    circumference, mm), ga_weeks (Hadlock from HC). Aligned: ``head_mask`` (the filled-ellipse annotation,
    a label map: 0 background, 1 head after `prepare`). Patient = the leading number (``012_2HC`` -> ``012``).
    """
    base = _dataset_dir(root, "hc18")
    table = base / "included_subset.csv"
    if not table.is_file():
        table = base / "training_set_pixel_size_and_HC.csv"
    df = _read_csv(table)
    _require(df, ("filename", "pixel size(mm)", "head circumference (mm)"), table)
    items = []
    for row in df.sort_values("filename").to_dict("records"):
        img = base / "training_set" / row["filename"]
        ann_name = row.get("annotation_file") or img.name.replace(".png", "_Annotation.png")
        ann = base / "training_set" / str(ann_name)
        if not img.is_file() or not ann.is_file():
            continue
        m = re.match(r"(\d+)_", img.name)
        hc = float(row["head circumference (mm)"])
        items.append(
            SpecItem(
                path=img,
                domain=domain,
                patient_id=m.group(1) if m else img.stem,
                video_id=img.stem,
                labels={
                    "pixel_size_mm": float(row["pixel size(mm)"]),
                    "hc_mm": hc,
                    "ga_weeks": round(ga_from_hc(hc), 4),
                },
                aligned={"head_mask": ann},
            )
        )
    if not items:
        raise SonoshiftError(f"no HC18 image listed in {table} exists under {base / 'training_set'}.")
    return DatasetSpec(items=tuple(items), name="hc18", source=str(table))


LOADERS = {
    "fetal_planes_db": fetal_planes_db_spec,
    "african_planes": african_planes_spec,
    "hc18": hc18_spec,
}
