"""Reading evaluated run folders (metrics.csv, metrics.json, metrics_dataset.csv) for the report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sonoshift.errors import SonoshiftError
from sonoshift.metrics import REGISTRY


@dataclass
class RunResult:
    """One evaluated run: its display label, metadata and per-frame metric rows."""

    label: str
    method: str
    config: str
    run_dir: Path
    meta: dict[str, Any]
    rows: pd.DataFrame
    dataset: pd.DataFrame = field(default_factory=pd.DataFrame)
    segmentation: pd.DataFrame = field(default_factory=pd.DataFrame)  # RUN/segmentation.csv (downstream), if any

    @property
    def metric_columns(self) -> list[str]:
        return [c for c in self.meta.get("metric_columns", []) if c in self.rows.columns]


def load_run(run_dir: str | Path) -> RunResult:
    """Read an evaluated run folder; raises SonoshiftError when ``sonoshift evaluate`` has not been run on it."""
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
    ds_path = run_dir / "metrics_dataset.csv"
    dataset = pd.read_csv(ds_path, keep_default_na=False, na_values=["nan"]) if ds_path.is_file() else pd.DataFrame()
    seg_path = run_dir / "segmentation.csv"
    try:
        ids = {"patient_id": str, "video_id": str, "variant": str, "pred_path": str}  # keep "00832" as written
        segmentation = pd.read_csv(seg_path, dtype=ids) if seg_path.is_file() else pd.DataFrame()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise SonoshiftError(f"{seg_path} is malformed; re-run the downstream segmentation.") from None
    method, config = str(meta.get("method", run_dir.name)), str(meta.get("config", ""))
    label = method if not config or config == method else f"{method} ({config})"
    if meta.get("leakage"):
        label += " [LEAKAGE: trained on test patients]"
    return RunResult(label, method, config, run_dir, meta, rows, dataset, segmentation)


def load_runs(run_dirs: list[str | Path]) -> list[RunResult]:
    """Load several runs; labels that collide get the run folder name appended."""
    if not run_dirs:
        raise SonoshiftError("give at least one evaluated run folder to report on.")
    runs = [load_run(d) for d in run_dirs]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.label} [{r.run_dir.name}]"
    return runs


def metric_order(runs: list[RunResult]) -> list[str]:
    """The union of metric columns over runs, in registry order (then any unknown ones)."""
    cols: list[str] = []
    for r in runs:
        cols += [c for c in r.metric_columns if c not in cols]
    known = [k for k in REGISTRY if k in cols]
    return known + [c for c in cols if c not in known]


def modes_of(runs: list[RunResult]) -> list[str]:
    """Reference modes present in any run, in the order target, source, gt."""
    present = {m for r in runs for m in r.rows["reference"].unique()}
    return [m for m in ("target", "source", "gt") if m in present] + sorted(present - {"target", "source", "gt"})
