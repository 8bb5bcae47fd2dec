"""Downstream judges in the summary: which per-frame score files a run folder may carry and how to read them.

Each judge writes ``RUN/<file>`` with one row per frame and input ``variant``: ``source`` (the raw frame, also
accepted as ``raw``), ``harmonized`` (the run's output) and ``ground_truth`` (the simulator's target-profile frame,
the ceiling), plus one column per per-frame score. A new judge is one line in ``JUDGES``; its rows appear in the
report summary as soon as a run folder holds the file. Most judges average a per-frame column; plane macro-F1 is
a set-level score (``aggregate="macro_f1"``: from the ``truth`` and ``pred`` columns of the variant's rows).
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
    (a 0/1 ``correct`` column gives an accuracy), or with ``aggregate="macro_f1"`` the rows' ``truth`` and
    ``column`` (the prediction) give a macro-F1."""

    file: str
    column: str
    name: str
    higher_is_better: bool
    digits: int = 2
    unit: str = ""
    aggregate: str = "mean"


JUDGES: tuple[Judge, ...] = (
    Judge("segmentation.csv", "dice_mean", "Dice", True, 2),
    Judge("segmentation.csv", "hd95_mean", "HD95", False, 1, "px"),
    Judge("planes.csv", "correct", "Plane accuracy", True, 2),
    Judge("planes.csv", "pred", "Plane macro-F1", True, 2, aggregate="macro_f1"),
    Judge("ga.csv", "head_found", "Head found (GA)", True, 2),  # the GA error below counts found heads only
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


def macro_f1_of(df: pd.DataFrame, truth: str = "truth", pred: str = "pred") -> float:
    """Macro-F1 of the rows' ``pred`` against ``truth`` (class names; the classes are those present in either,
    as scikit-learn's default); NaN without rows."""
    from sonoshift.judges.plane.scores import confusion, macro_f1

    t, p = df[truth].astype(str).to_numpy(), df[pred].astype(str).to_numpy()
    if not len(t):
        return float("nan")
    classes = sorted(set(t) | set(p))
    index = {c: i for i, c in enumerate(classes)}
    return macro_f1(confusion([index[c] for c in t], [index[c] for c in p], len(classes)))


def _mean(df: pd.DataFrame, variant: str, column: str, aggregate: str = "mean") -> tuple[float, int]:
    """Mean of the finite values of ``column`` over the rows of ``variant`` (NaN when there are none), or their
    macro-F1 (``aggregate="macro_f1"``)."""
    sub = df[df["variant"].map(VARIANTS.get) == variant]
    if aggregate == "macro_f1":
        sub = sub[sub["truth"].notna() & sub[column].notna()] if "truth" in sub.columns else sub.iloc[:0]
        return (macro_f1_of(sub, pred=column) if len(sub) else float("nan")), int(len(sub))
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
            h, n_h = _mean(df, "harmonized", judge.column, judge.aggregate)
            if n_h:
                harmonized[r.label] = h
                n = max(n, n_h)
            if np.isnan(raw):
                raw = _mean(df, "source", judge.column, judge.aggregate)[0]
            if np.isnan(ceiling):
                ceiling = _mean(df, "ground_truth", judge.column, judge.aggregate)[0]
        if harmonized or not np.isnan(raw):
            out.append(JudgeScores(judge, raw, ceiling, harmonized, n))
    return out


def judges_frame(runs: list[RunResult]) -> pd.DataFrame:
    """Plane classification and GA per run and input variant (source / harmonized / ground_truth), from each run's
    ``planes.csv`` and ``ga.csv`` (the segmentation table's shape): method, config, label, variant, plane_n,
    plane_accuracy, plane_macro_f1, ga_n (head frames), head_found (rate), ga_mean / ga_std (|GA error|, days,
    over frames with a head found) and the best flags (highest accuracy and macro-F1, lowest GA error)."""
    records: list[dict] = []
    for r in runs:
        planes, ga = _table(r, "planes.csv"), _table(r, "ga.csv")
        found: dict[str, dict] = {}
        for df, kind in ((planes, "plane"), (ga, "ga")):
            if df.empty or "variant" not in df.columns:
                continue
            for variant in df["variant"].unique():
                sub = df[df["variant"] == variant]
                rec = found.setdefault(str(variant), {"method": r.method, "config": r.config, "label": r.label,
                                                      "variant": VARIANTS.get(str(variant), str(variant))})
                if kind == "plane":
                    rec.update(plane_n=len(sub), plane_accuracy=_mean(df, rec["variant"], "correct")[0],
                               plane_macro_f1=_mean(df, rec["variant"], "pred", "macro_f1")[0])
                else:
                    e = pd.to_numeric(sub["ga_abs_error_days"], errors="coerce").to_numpy(dtype=float)
                    e = e[np.isfinite(e)]
                    rec.update(ga_n=len(sub), head_found=float(pd.to_numeric(sub["head_found"]).mean()),
                               ga_mean=float(e.mean()) if e.size else float("nan"),
                               ga_std=float(e.std()) if e.size else float("nan"))
        records += list(found.values())
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    for col in ("plane_n", "plane_accuracy", "plane_macro_f1", "ga_n", "head_found", "ga_mean", "ga_std"):
        if col not in frame.columns:
            frame[col] = float("nan")
    for col, hib in (("plane_accuracy", True), ("plane_macro_f1", True), ("ga_mean", False)):
        v = frame[col]
        best = v.max() if hib else v.min()
        frame[f"{col}_best"] = (v == best) & (len(frame) > 1)
    return frame
