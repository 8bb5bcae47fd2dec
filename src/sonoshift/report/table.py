"""The Table III layout: mean ± std per method and configuration, best per metric in bold, direction arrows.

One table per reference mode, written as Markdown, CSV (wide: <metric>_mean, <metric>_std) and LaTeX; plus the
distribution-level table (FID / KID on the labelled extractor, pooled BC) when runs have it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sonoshift.metrics import REGISTRY, higher_is_better
from sonoshift.report.downstream import judges_frame
from sonoshift.report.load import RunResult, metric_order, modes_of

MODE_TITLE = {
    "target": "vs paired target frame (paper protocol)",
    "source": "vs own source frame (structure kept)",
    "gt": "vs simulator ground truth (true accuracy)",
}


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    best: bool = False


@dataclass
class Table:
    """One reference mode: rows (label, method, config, n frames) x metrics -> Cell."""

    mode: str
    metrics: list[str]
    rows: list[tuple[str, str, str, int]]
    cells: dict[tuple[str, str], Cell]


def display(metric: str) -> str:
    spec = REGISTRY.get(metric)
    return spec.display if spec else metric


def arrow(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓"


def fmt(metric: str, v: float) -> str:
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.2f}" if metric in ("psnr", "fid") else f"{v:.4f}"


def build_tables(runs: list[RunResult]) -> list[Table]:
    """Aggregate per-frame rows into one Table per reference mode (NaN values are left out of mean and std)."""
    metrics = metric_order(runs)
    tables = []
    for mode in modes_of(runs):
        rows, cells = [], {}
        for r in runs:
            sub = r.rows[r.rows["reference"] == mode]
            if sub.empty:
                continue
            rows.append((r.label, r.method, r.config, len(sub)))
            for m in metrics:
                if m not in sub.columns:
                    continue
                v = sub[m].to_numpy(dtype=float)
                v = v[~np.isnan(v)]
                if v.size == 0:
                    cells[(r.label, m)] = Cell(float("nan"), float("nan"), 0)
                    continue
                finite = v[np.isfinite(v)]
                mean = float(v.mean()) if finite.size < v.size else float(finite.mean())
                std = float(finite.std()) if finite.size == v.size else float("nan")
                cells[(r.label, m)] = Cell(mean, std, int(v.size))
        for m in metrics:
            vals = [(lbl, cells[(lbl, m)].mean) for lbl, *_ in rows if (lbl, m) in cells]
            vals = [(lbl, v) for lbl, v in vals if not math.isnan(v)]
            if len(vals) >= 1:
                best = max(v for _, v in vals) if higher_is_better(m) else min(v for _, v in vals)
                for lbl, v in vals:
                    cells[(lbl, m)].best = v == best and len(rows) > 1
        tables.append(Table(mode, [m for m in metrics if any((lbl, m) in cells for lbl, *_ in rows)], rows, cells))
    return tables


def _cell_text(t: Table, label: str, m: str) -> str:
    c = t.cells.get((label, m))
    if c is None:
        return "–"
    s = fmt(m, c.mean) if math.isnan(c.std) else f"{fmt(m, c.mean)} ± {fmt(m, c.std)}"
    return s


def _grouped(values: dict[str, str]) -> list[tuple[list[str], str]]:
    """Run labels grouped by a shared text, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for label, v in values.items():
        groups.setdefault(v, []).append(label)
    return [(labels, v) for v, labels in groups.items()]


def notes(runs: list[RunResult]) -> list[str]:
    """The sentences every table carries, each said once: directions, mask use, CSS / MI definitions, LPIPS
    status (a note shared by every run is written once for all)."""
    out = ["↑ higher is better; ↓ lower is better (MAE, LPIPS, FID, KID: lower is better). Best per column in bold."]
    masks = _grouped({r.label: str(r.meta.get("mask_note", "mask use unknown")) for r in runs})
    for labels, note in masks:
        who = "All runs" if len(masks) == 1 and len(runs) > 1 else ", ".join(labels)
        out.append(f"{who}: {note}.")
    first = runs[0].meta
    out.append(f"CSS = {first.get('css_variant', 'mean of (c + s) / 2')}; MI = {first.get('mi', 'normalized')}.")
    missing = {r.label: str(r.meta.get("lpips", "")) for r in runs if str(r.meta.get("lpips", "")).startswith("not")}
    for labels, status in _grouped(missing):
        who = "any run" if len(labels) == len(runs) else ", ".join(labels)
        reason = status.removeprefix("not computed").strip(" :;()").rstrip(".")
        out.append(f"LPIPS not computed for {who}{': ' + reason if reason else ''}.")
    return out


def to_markdown(tables: list[Table], runs: list[RunResult], lead: list[str] | tuple[str, ...] = ()) -> str:
    """All mode tables as Markdown sections, plus the notes; ``lead``: lines placed before the tables (the
    verdict)."""
    lines = ["# sonoshift results", "", *lead]
    for t in tables:
        lines += [f"## Reference: {t.mode} — {MODE_TITLE.get(t.mode, t.mode)}", ""]
        head = ["Method", "Config", "n"] + [f"{display(m)} {arrow(m)}" for m in t.metrics]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(t.metrics)) + "|"]
        for label, method, config, n in t.rows:
            vals = []
            for m in t.metrics:
                s = _cell_text(t, label, m)
                c = t.cells.get((label, m))
                vals.append(f"**{s}**" if c is not None and c.best else s)
            name = label.replace(f" ({config})", "") if config else label
            lines.append("| " + " | ".join([name, config or "–", str(n)] + vals) + " |")
        lines.append("")
    seg = segmentation_frame(runs)
    if not seg.empty:
        lines += ["## Downstream segmentation (target-domain segmenter; vs the source frame's label map)", ""]
        lines += ["| Method | Config | Input | n | Dice ↑ | HD95 (px) ↓ |", "|---|---|---|---:|---:|---:|"]
        for _, d in seg.iterrows():
            lines.append(f"| {d['method']} | {d['config'] or '–'} | {d['variant']} | {d['n']} | "
                         f"{_pm('dice', d['dice_mean'], d['dice_std'], d['dice_best'])} | "
                         f"{_pm('hd95', d['hd95_mean'], d['hd95_std'], d['hd95_best'])} |")  # fmt: skip
        lines.append("")
    jf = judges_frame(runs)
    if not jf.empty:
        lines += ["## Downstream plane classification and gestational age (target-domain judges)", ""]
        lines += ["| Method | Config | Input | n | Plane accuracy ↑ | Plane macro-F1 ↑ | head frames | head found | "
                  "GA error (days) ↓ |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for _, d in jf.iterrows():
            lines.append(f"| {d['method']} | {d['config'] or '–'} | {d['variant']} | {_int(d['plane_n'])} | "
                         f"{_judge_cell(d, 'plane_accuracy', 3)} | {_judge_cell(d, 'plane_macro_f1', 3)} | "
                         f"{_int(d['ga_n'])} | {_judge_num(d['head_found'], 2)} | {_judge_cell(d, 'ga_mean', 1)} |")
        lines.append("")
    dist = distribution_frame(runs)
    if not dist.empty:
        lines += ["## Distribution level", ""]
        lines += ["| Method | Config | Reference | FID ↓ | KID ↓ | BC (dataset) ↑ |", "|---|---|---|---:|---:|---:|"]
        for _, d in dist.iterrows():
            lines.append(f"| {d['method']} | {d['config'] or '–'} | {d['reference']} | {fmt('fid', d['fid'])} | "
                         f"{fmt('kid', d['kid'])} | {fmt('bc', d['bc_dataset'])} |")  # fmt: skip
        lines += ["", f"FID/KID features: {dist['extractor'].iloc[0]}.", ""]
    lines += ["Notes:", ""] + [f"- {n}" for n in notes(runs)] + [""]
    return "\n".join(lines)


def to_csv(tables: list[Table]) -> str:
    """Wide CSV: reference, method, config, label, n, then <metric>_mean and <metric>_std per metric."""
    records = []
    for t in tables:
        for label, method, config, n in t.rows:
            rec = {"reference": t.mode, "method": method, "config": config, "label": label, "n": n}
            for m in t.metrics:
                c = t.cells.get((label, m))
                rec[f"{m}_mean"] = c.mean if c else float("nan")
                rec[f"{m}_std"] = c.std if c else float("nan")
                rec[f"{m}_best"] = int(bool(c and c.best))
            records.append(rec)
    return pd.DataFrame(records).to_csv(index=False, lineterminator="\n")


_TEX_ARROW = {True: r"$\uparrow$", False: r"$\downarrow$"}


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("∞", r"$\infty$"), ("–", "--")):  # fmt: skip
        s = s.replace(a, b)
    return s


def to_latex(tables: list[Table], runs: list[RunResult]) -> str:
    """One ``table`` environment per mode (plain tabular, \\hline rules, \\textbf for the best)."""
    out = []
    for t in tables:
        cols = "ll r" + " c" * len(t.metrics)
        head = ["Method", "Config", "$n$"] + [f"{_tex(display(m))} {_TEX_ARROW[higher_is_better(m)]}" for m in t.metrics]
        out += [r"\begin{table}[t]", r"\centering", r"\small", f"\\begin{{tabular}}{{{cols}}}", r"\hline",
                " & ".join(head) + r" \\", r"\hline"]  # fmt: skip
        for label, method, config, n in t.rows:
            vals = []
            for m in t.metrics:
                c = t.cells.get((label, m))
                s = _tex(_cell_text(t, label, m)).replace(" ± ", r" $\pm$ ")
                vals.append(f"\\textbf{{{s}}}" if c is not None and c.best else s)
            out.append(" & ".join([_tex(method), _tex(config or "--"), str(n)] + vals) + r" \\")
        caption = (f"Reference: {t.mode}, {MODE_TITLE.get(t.mode, t.mode)}. Mean $\\pm$ std over frames; "
                   r"$\uparrow$ higher is better, $\downarrow$ lower is better (LPIPS, MAE: lower is better); "
                   "best in bold.")  # fmt: skip
        out += [r"\hline", r"\end{tabular}", f"\\caption{{{caption}}}",
                f"\\label{{tab:sonoshift-{t.mode}}}", r"\end{table}", ""]  # fmt: skip
    return "\n".join(out)


def distribution_frame(runs: list[RunResult]) -> pd.DataFrame:
    """Distribution-level numbers as rows (method, config, reference, fid, kid, bc_dataset, extractor)."""
    records = []
    for r in runs:
        d = r.dataset
        if d.empty:
            continue
        for mode in d["reference"].unique():
            sub = d[d["reference"] == mode].set_index("metric")
            get = lambda k: float(sub.loc[k, "value"]) if k in sub.index else float("nan")  # noqa: E731
            note = str(sub.loc["fid", "note"]) if "fid" in sub.index else ""
            records.append({"method": r.method, "config": r.config, "label": r.label, "reference": mode,
                            "fid": get("fid"), "kid": get("kid"), "bc_dataset": get("bc_dataset"),
                            "extractor": note})  # fmt: skip
    return pd.DataFrame(records)


def _pm(metric: str, mean: float, std: float, best: bool) -> str:
    s = fmt(metric, mean) if math.isnan(std) else f"{fmt(metric, mean)} ± {fmt(metric, std)}"
    return f"**{s}**" if best else s


def _int(v: object) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(int(v))


def _judge_num(v: float, digits: int) -> str:
    return "–" if v is None or math.isnan(float(v)) else f"{float(v):.{digits}f}"


def _judge_cell(d: pd.Series, col: str, digits: int, bold: bool = True) -> str:
    """A judges-table cell: value (± std for the GA error), bold when best."""
    s = _judge_num(d[col], digits)
    if col == "ga_mean" and s != "–" and not math.isnan(float(d["ga_std"])):
        s += f" ± {float(d['ga_std']):.{digits}f}"
    return f"**{s}**" if bold and bool(d.get(f"{col}_best", False)) else s


def segmentation_frame(runs: list[RunResult]) -> pd.DataFrame:
    """Downstream segmentation per run and input variant (source / harmonized / ground_truth), from each run's
    ``segmentation.csv``: method, config, label, variant, n, dice_mean/std, hd95_mean/std and the best flags
    (highest Dice, lowest HD95 over all rows; infinite HD95 values are left out of its mean)."""
    records = []
    for r in runs:
        seg = r.segmentation
        if seg.empty or "variant" not in seg.columns:
            continue
        for variant in seg["variant"].unique():
            sub = seg[seg["variant"] == variant]
            rec = {"method": r.method, "config": r.config, "label": r.label, "variant": variant, "n": len(sub)}
            for m in ("dice", "hd95"):
                col = f"{m}_mean"
                v = sub[col].to_numpy(dtype=float) if col in sub.columns else np.array([])
                v = v[np.isfinite(v)]
                rec[f"{m}_mean"] = float(v.mean()) if v.size else float("nan")
                rec[f"{m}_std"] = float(v.std()) if v.size else float("nan")
            records.append(rec)
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    for m, hib in (("dice", True), ("hd95", False)):
        col = frame[f"{m}_mean"]
        best = col.max() if hib else col.min()
        frame[f"{m}_best"] = (col == best) & (len(frame) > 1)
    return frame
