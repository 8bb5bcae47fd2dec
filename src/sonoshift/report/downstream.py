"""Downstream judges in the summary: which per-frame score files a run folder may carry and how to read them.

Each judge writes ``RUN/<file>`` with one row per frame and input ``variant``: ``source`` (the raw frame, also
accepted as ``raw``), ``harmonized`` (the run's output) and ``ground_truth`` (the simulator's target-profile frame,
the ceiling), plus one column per per-frame score. A new judge is one line in ``JUDGES``; its rows appear in the
report summary as soon as a run folder holds the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sonoshift.report.load import RunResult

VARIANTS = {"source": "source", "raw": "source", "harmonized": "harmonized", "ground_truth": "ground_truth"}


@dataclass(frozen=True)
class Judge:
    """One downstream score: ``column`` of ``RUN/<file>``, shown as ``name``; per-frame values are averaged
    (a 0/1 ``correct`` column gives an accuracy)."""

    file: str
    column: str
    name: str
    higher_is_better: bool
    digits: int = 2
    unit: str = ""


JUDGES: tuple[Judge, ...] = (
    Judge("segmentation.csv", "dice_mean", "Dice", True, 2),
    Judge("segmentation.csv", "hd95_mean", "HD95", False, 1, "px"),
    Judge("planes.csv", "correct", "Plane accuracy", True, 2),
    Judge("ga.csv", "ga_abs_error_days", "GA error", False, 1, "days"),
)


@dataclass
class JudgeScores:
    """One judge over the runs: the raw and ceiling means (the same frames for every run; taken from the first
    run that has them) and each run's harmonized mean, by run label."""

    judge: Judge
    raw: float
    ceiling: float
    harmonized: dict[str, float]
    n: int


def _table(run: RunResult, file: str) -> pd.DataFrame:
    if file == "segmentation.csv":
        return run.segmentation
    path = run.run_dir / file
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path, dtype={"variant": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return pd.DataFrame()


def _mean(df: pd.DataFrame, variant: str, column: str) -> tuple[float, int]:
    """Mean of the finite values of ``column`` over the rows of ``variant`` (NaN when there are none)."""
    sub = df[df["variant"].map(VARIANTS.get) == variant]
    v = pd.to_numeric(sub[column], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.mean()) if v.size else float("nan")), int(v.size)


def judge_scores(runs: list[RunResult]) -> list[JudgeScores]:
    """Every judge that at least one run carries, in ``JUDGES`` order."""
    out = []
    for judge in JUDGES:
        raw = ceiling = float("nan")
        harmonized: dict[str, float] = {}
        n = 0
        for r in runs:
            df = _table(r, judge.file)
            if df.empty or "variant" not in df.columns or judge.column not in df.columns:
                continue
            h, n_h = _mean(df, "harmonized", judge.column)
            if n_h:
                harmonized[r.label] = h
                n = max(n, n_h)
            if np.isnan(raw):
                raw = _mean(df, "source", judge.column)[0]
            if np.isnan(ceiling):
                ceiling = _mean(df, "ground_truth", judge.column)[0]
        if harmonized or not np.isnan(raw):
            out.append(JudgeScores(judge, raw, ceiling, harmonized, n))
    return out
