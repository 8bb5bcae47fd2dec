"""The one reader of translation run folders (docs/formats.md §3), shared by evaluate, downstream and the report.

A run folder holds ``run.json`` (what made it), ``outputs.csv`` (one row per output frame, paths relative to
the run for outputs and to the prepared dataset for everything else), ``outputs/`` and, once scored,
``metrics.csv``, ``metrics.json``, ``metrics_dataset.csv`` and ``segmentation.csv``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonoshift.errors import SonoshiftError

ID_DTYPES = {"patient_id": str, "video_id": str}  # keep "00832" as written


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, with one clear error when it is missing, malformed or not an object."""
    if not path.is_file():
        raise SonoshiftError(f"{path} does not exist (is {path.parent} a translation run folder?).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise SonoshiftError(f"{path} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise SonoshiftError(f"{path} must hold a JSON object.")
    return data


def resolve(path: Any, root: Path) -> Path | None:
    """A path cell from outputs.csv: absolute as is, otherwise relative to ``root``; None for an empty cell."""
    if path is None or (isinstance(path, float) and math.isnan(path)) or str(path) == "":
        return None
    p = Path(str(path))
    return p if p.is_absolute() else root / p


def dataset_reference(dataset: str | Path, run_dir: str | Path) -> str:
    """How run.json names its prepared dataset: the path relative to the run folder (posix separators), or the
    absolute path where no relative one exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(dataset).resolve(), Path(run_dir).resolve())).as_posix()
    except ValueError:
        return str(Path(dataset).resolve())


@dataclass(frozen=True)
class RunFolder:
    """An opened run folder: its path and ``run.json`` content (``info``; {} when absent and not required)."""

    path: Path
    info: dict[str, Any]

    @property
    def method(self) -> str:
        """The method that made the run (run.json ``method``; the folder name when unknown)."""
        return str(self.info.get("method", self.path.name))

    @property
    def dataset_root(self) -> Path:
        """The prepared dataset the run's relative paths refer to: run.json "dataset" (relative to the run, so a
        run moved together with its dataset still finds it), else "dataset_absolute" (where it was written, for a
        run moved alone); the run folder itself when run.json names none."""
        ds = self.info.get("dataset")
        if not ds:
            return self.path
        p = Path(str(ds))
        here = p if p.is_absolute() else self.path / p
        there = self.info.get("dataset_absolute")
        if not here.is_dir() and there and Path(str(there)).is_dir():
            return Path(str(there))
        return here

    def resolve(self, cell: Any) -> Path | None:
        """A dataset path cell of outputs.csv as a path (None for an empty cell)."""
        return resolve(cell, self.dataset_root)

    def _outputs_csv(self) -> Path:
        path = self.path / "outputs.csv"
        if not path.is_file():
            raise SonoshiftError(f"translation run {self.path} has no outputs.csv (run `sonoshift harmonize` first).")
        return path

    def outputs(self, required: tuple[str, ...] = ("output_path", "source_path")) -> list[dict[str, str]]:
        """Rows of ``outputs.csv`` (every cell a stripped string, missing cells empty); at least one row and the
        ``required`` columns."""
        path = self._outputs_csv()
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(required) - set(reader.fieldnames or [])
            if missing:
                raise SonoshiftError(f"{path} lacks the column(s) {', '.join(sorted(missing))}.")
            rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
        if not rows:
            raise SonoshiftError(f"{path} lists no output frames.")
        for i, r in enumerate(rows, start=2):  # line 1 is the header
            for col in required:
                if not r.get(col):
                    raise SonoshiftError(f"{path} line {i} has no {col}: every output frame needs one.")
            if r.get("frame_index") and not r["frame_index"].lstrip("-").isdigit():
                raise SonoshiftError(f"{path} line {i} has frame_index {r['frame_index']!r}, not a whole number.")
        return rows

    def outputs_frame(self, required: tuple[str, ...] = ("output_path", "source_path")) -> pd.DataFrame:
        """``outputs.csv`` as a DataFrame (ids kept as strings) with the ``required`` columns."""
        path = self._outputs_csv()
        df = pd.read_csv(path, dtype=ID_DTYPES)
        for col in required:
            if col not in df.columns:
                raise SonoshiftError(f"run table {path} lacks the column {col}.")
        return df


def open_run(run_dir: str | Path, *, require_info: bool = True) -> RunFolder:
    """Open the run folder ``run_dir``; ``require_info`` False accepts a run without ``run.json``."""
    path = Path(run_dir)
    if not require_info and not (path / "run.json").is_file():
        return RunFolder(path, {})
    return RunFolder(path, read_json(path / "run.json"))


@dataclass(frozen=True)
class Evaluation:
    """What `sonoshift evaluate` (and the downstream segmentation) wrote into a run folder."""

    meta: dict[str, Any]  # metrics.json
    rows: pd.DataFrame  # metrics.csv: one row per (frame, reference mode)
    dataset: pd.DataFrame  # metrics_dataset.csv (empty when absent)
    segmentation: pd.DataFrame  # segmentation.csv (empty when absent)


def read_evaluation(run_dir: str | Path) -> Evaluation:
    """The scores of an evaluated run folder; one clear error when `sonoshift evaluate` has not been run."""
    run_dir = Path(run_dir)
    csv_path, meta_path = run_dir / "metrics.csv", run_dir / "metrics.json"
    for p in (csv_path, meta_path):
        if not p.is_file():
            raise SonoshiftError(f"{p} does not exist: run `sonoshift evaluate {run_dir}` first.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        rows = pd.read_csv(csv_path, keep_default_na=False, na_values=["nan"],
                           dtype={"config": str, "method": str, "reference": str, "patient_id": str})  # fmt: skip
    except (json.JSONDecodeError, pd.errors.ParserError, UnicodeDecodeError):
        raise SonoshiftError(f"{meta_path} or {csv_path} is malformed; re-run `sonoshift evaluate`.") from None
    if "reference" not in rows.columns:
        raise SonoshiftError(f"{csv_path} has no 'reference' column; re-run `sonoshift evaluate`.")
    for col in (c for c in meta.get("metric_columns", []) if c in rows.columns):
        values = pd.to_numeric(rows[col], errors="coerce")
        bad = values.isna() & rows[col].notna() & (rows[col].astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise SonoshiftError(f"{csv_path} line {i + 2} holds {rows[col].iloc[i]!r} in column {col}, not a number; "
                                 f"re-run `sonoshift evaluate`.")
        rows[col] = values
    ds_path = run_dir / "metrics_dataset.csv"
    dataset = pd.read_csv(ds_path, keep_default_na=False, na_values=["nan"]) if ds_path.is_file() else pd.DataFrame()
    seg_path = run_dir / "segmentation.csv"
    try:
        ids = {**ID_DTYPES, "variant": str, "pred_path": str}
        segmentation = pd.read_csv(seg_path, dtype=ids) if seg_path.is_file() else pd.DataFrame()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise SonoshiftError(f"{seg_path} is malformed; re-run the downstream segmentation.") from None
    return Evaluation(meta, rows, dataset, segmentation)


__all__ = ["Evaluation", "RunFolder", "open_run", "read_evaluation", "read_json", "resolve"]
