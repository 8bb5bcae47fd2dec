"""Evaluated run folders as the report needs them (labels, metric order); the files are read by ``sonoshift.runs``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sonoshift.errors import SonoshiftError
from sonoshift.metrics import REGISTRY
from sonoshift.runs import read_evaluation


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
    ev = read_evaluation(run_dir)
    meta, rows, dataset, segmentation = ev.meta, ev.rows, ev.dataset, ev.segmentation
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
