"""The verdict at the top of the report: per reference mode the best method for each metric and its gain over the
untranslated frames, the downstream judges (raw, harmonized, ceiling) and one sentence per method saying whether
it beats doing nothing.

Rows come from whatever the evaluation wrote: every per-frame metric column, every dataset-level metric in
``metrics_dataset.csv`` and every judge of ``report.downstream.JUDGES`` a run folder carries. Every run other than
the untranslated baseline is a candidate, extra baselines (e.g. histogram matching) included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sonoshift.metrics import higher_is_better
from sonoshift.report.downstream import JudgeScores, judge_scores
from sonoshift.report.load import RunResult, metric_order, modes_of
from sonoshift.report.table import Table, display

UNTRANSLATED = "untranslated"  # the method name of the no-translation run (inference.Untranslated)
UNPAIRED_NOTE = ("unpaired data: each frame's target is a frame of another patient, so \"vs paired target\" "
                 "measures grey-level and texture agreement, not structure")
MODE_SHORT = {"target": "vs paired target", "source": "vs own source", "gt": "vs ground truth"}
# Against its own source the untranslated run is perfect by construction: no gain is shown and no verdict drawn.
NO_GAIN_MODES = ("source",)
YES, MIXED, NO = "beats doing nothing", "mixed", "does not beat doing nothing"
UNKNOWN = "not compared"  # no metric or judge has values for both the method and the untranslated frames
VERDICT_RULE = ("A method counts as better on a per-frame metric when the 95% patient-bootstrap interval of its mean "
                "paired difference to the untranslated frames excludes zero (a difference within noise is not a "
                "gain); dataset-level metrics (one value per run: FID, KID, dataset BC) by their value.")


@dataclass
class Best:
    """The best candidate run(s) for one metric and mode, with the untranslated value and the difference."""

    labels: list[str]
    value: float
    baseline: float  # the untranslated run's value (NaN when there is none)

    @property
    def gain(self) -> float:
        return self.value - self.baseline


@dataclass
class Verdict:
    label: str
    word: str  # YES, MIXED, NO or UNKNOWN
    sentence: str


@dataclass
class Summary:
    context: str  # e.g. "handheld → cart · test split · 18 frames · 4 runs"
    modes: list[str]
    metrics: list[str]
    best: dict[tuple[str, str], Best]
    baseline: str | None  # label of the untranslated run, if any
    downstream: list[JudgeScores] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


def better(metric: str, a: float, b: float, hib: bool | None = None) -> bool | None:
    """Whether ``a`` is strictly better than ``b`` for ``metric``; None when either is NaN or both are the same
    infinity."""
    if math.isnan(a) or math.isnan(b) or (math.isinf(a) and a == b):
        return None
    hib = higher_is_better(metric) if hib is None else hib
    return a > b if hib else a < b


def same_shown(a: float, b: float, digits: int) -> bool:
    """Whether two finite judge scores read the same at the ``digits`` they are reported with (a tie)."""
    return math.isfinite(a) and math.isfinite(b) and round(a, digits) == round(b, digits)


def _means(runs: list[RunResult], tables: list[Table]) -> tuple[list[str], dict[tuple[str, str, str], float]]:
    """(metric rows, {(mode, metric, run label): mean}) from the tables and the dataset-level files."""
    means: dict[tuple[str, str, str], float] = {}
    metrics = list(metric_order(runs))
    for t in tables:
        for (label, m), c in t.cells.items():
            means[(t.mode, m, label)] = c.mean
    for r in runs:
        d = r.dataset
        if d.empty or not {"reference", "metric", "value"} <= set(d.columns):
            continue
        for _, row in d.iterrows():
            m = str(row["metric"])
            means[(str(row["reference"]), m, r.label)] = float(row["value"])
            if m not in metrics:
                metrics.append(m)
    return metrics, means


def _list(names: list[str]) -> str:
    return ", ".join(display(n) for n in names)


def _mode_clause(mode: str, wins: list[str], total: list[str]) -> str:
    k, n = len(wins), len(total)
    where = MODE_SHORT.get(mode, f"vs {mode}")
    if k == n:
        return f"{k}/{n} metrics {where}"
    if k * 2 > n:
        return f"{k}/{n} {where} (all but {_list([m for m in total if m not in wins])})"
    return f"{k}/{n} {where}" + (f" ({_list(wins)})" if wins else "")


PAIR_KEYS = ("patient_id", "video_id", "frame_index")  # one frame of the scored split, the same in every run


def paired_better(run: RunResult, base: RunResult, mode: str, metric: str) -> bool | None | str:
    """Whether ``run`` is measurably better than ``base`` on per-frame ``metric`` against reference ``mode``: the
    95% patient-bootstrap interval (``metrics.bootstrap.patient_bootstrap``) of the mean paired difference over the
    frames both scored lies entirely on the better side. True / False (within noise, or worse); "unpaired" when the
    runs have no per-frame values of it to pair (a dataset-level metric); None when no frame has both values."""
    from sonoshift.metrics.bootstrap import patient_bootstrap

    cols = [*PAIR_KEYS, metric]
    if any(c not in r.rows.columns for r in (run, base) for c in cols):
        return "unpaired"
    a, b = (r.rows[r.rows["reference"] == mode][cols] for r in (run, base))
    both = a.merge(b, on=list(PAIR_KEYS), suffixes=("", "_base"))
    d = both[metric].to_numpy(dtype=float) - both[f"{metric}_base"].to_numpy(dtype=float)
    ok = np.isfinite(d)
    if not ok.any():
        return None
    ci = patient_bootstrap(d[ok], both["patient_id"].astype(str).to_numpy()[ok])
    return bool(ci.low > 0) if higher_is_better(metric) else bool(ci.high < 0)


def _verdict(label: str, modes: list[str], metrics: list[str], means: dict, base: str,
             downstream: list[JudgeScores], runs: dict[str, RunResult]) -> Verdict:  # fmt: skip
    clauses, majorities = [], []
    for mode in modes:
        if mode in NO_GAIN_MODES:
            continue
        total, wins = [], []
        for m in metrics:
            b = paired_better(runs[label], runs[base], mode, m)
            if b == "unpaired":  # a dataset-level metric: one value per run, compared as it is
                b = better(m, means.get((mode, m, label), float("nan")), means.get((mode, m, base), float("nan")))
            if b is None:
                continue
            total.append(m)
            if b:
                wins.append(m)
        if total:
            clauses.append(_mode_clause(mode, wins, total))
            majorities.append(len(wins) * 2 > len(total))
    down, down_better = [], []
    for s in downstream:
        h = s.harmonized.get(label, float("nan"))
        b = better("", h, s.raw, s.judge.higher_is_better)
        if b is None:
            continue
        j = s.judge
        unit = f" {j.unit}" if j.unit else ""
        tie = same_shown(h, s.raw, j.digits)
        if not tie:  # a tie is neither a gain nor a loss
            down_better.append(b)
        down.append(f"{j.name} {s.raw:.{j.digits}f} → {h:.{j.digits}f}{unit} "
                    f"({'same' if tie else 'better' if b else 'worse'})")
    if not clauses and not down:
        return Verdict(label, UNKNOWN, "no metric has values for both it and the untranslated frames.")
    if all(majorities) and not any(d is False for d in down_better):
        word = YES
    elif not any(majorities) and not any(down_better):
        word = NO
    else:
        word = MIXED
    parts = []
    if clauses:
        parts.append("better on " + " and ".join(clauses))
    if down:
        parts.append("downstream " + ", ".join(down))
    return Verdict(label, word, "; ".join(parts) + ".")


def build_summary(runs: list[RunResult], tables: list[Table]) -> Summary:
    """The summary of ``runs`` (aggregated into ``tables`` by ``build_tables``)."""
    metrics, means = _means(runs, tables)
    modes = modes_of(runs)
    base = next((r.label for r in runs if r.method == UNTRANSLATED), None)
    candidates = [r.label for r in runs if r.label != base]
    best: dict[tuple[str, str], Best] = {}
    rows = []
    for m in metrics:
        for mode in modes:
            vals = [(lbl, means.get((mode, m, lbl), float("nan"))) for lbl in candidates]
            vals = [(lbl, v) for lbl, v in vals if not math.isnan(v)]
            if not vals:
                continue
            top = max(v for _, v in vals) if higher_is_better(m) else min(v for _, v in vals)
            b = means.get((mode, m, base), float("nan")) if base else float("nan")
            best[(mode, m)] = Best([lbl for lbl, v in vals if v == top], top, b)
        if any((mode, m) in best for mode in modes):
            rows.append(m)
    downstream = judge_scores(runs)
    by_label = {r.label: r for r in runs}
    verdicts = [_verdict(lbl, modes, rows, means, base, downstream, by_label) for lbl in candidates] if base else []
    meta = runs[0].meta
    n = max((n for t in tables for *_, n in t.rows), default=0)
    ctx = [f"{meta['source_domain']} → {meta['target_domain']}" if meta.get("source_domain") else "",
           f"{meta['split']} split" if meta.get("split") else "", f"{n} frames per run", f"{len(runs)} runs"]  # fmt: skip
    if any(r.meta.get("paired") is False for r in runs):  # real scanners: the pairs join frames of other patients
        ctx.append(UNPAIRED_NOTE)
    empty = [f"{m} ({r.label})" for r in runs for m in r.metric_columns
             if not r.rows[m].astype(float).notna().any()]
    if empty:  # said where the verdict's metric count is read, not dropped in silence
        ctx.append(f"no value in any frame, left out of the verdict: {', '.join(empty)}")
    return Summary(" · ".join(c for c in ctx if c), modes, rows, best, base, downstream, verdicts)



def summary_markdown(s: Summary) -> list[str]:
    """The verdict as Markdown lines (one bullet per method), for the top of table.md."""
    if not s.verdicts:
        return []
    lines = ["## Verdict: does each method beat doing nothing (the untranslated frames)?", "", s.context, ""]
    lines += [f"- **{v.label}** — {v.word}: {v.sentence}" for v in s.verdicts]
    return [*lines, "", VERDICT_RULE, ""]
