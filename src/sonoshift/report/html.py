"""One self-contained HTML page (images inlined as base64), verdict first: the summary, the qualitative figure,
the notes (each said once), the tables, then the violins and the per-frame grid in collapsible sections."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

from sonoshift.report.downstream import judges_frame
from sonoshift.report.load import RunResult
from sonoshift.report.sections import IMAGE_SUFFIXES, ExtraSection, section_html
from sonoshift.report.summary import (
    MIXED,
    MODE_SHORT,
    NO,
    NO_GAIN_MODES,
    VERDICT_RULE,
    YES,
    Summary,
    better,
    same_shown,
)
from sonoshift.report.table import (
    MODE_TITLE,
    Table,
    _cell_text,
    _judge_cell,
    _judge_num,
    _pm,
    arrow,
    display,
    distribution_frame,
    fmt,
    notes,
    segmentation_frame,
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0.8em auto;max-width:1220px;color:#222;
 padding:0 12px}
h1{font-size:1.35em;margin:0.1em 0} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 0.3em}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.82em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right} th{background:#f3f3f3}
td.l,th.l{text-align:left} td.best{font-weight:bold;background:#eef6ee}
.figs{display:flex;flex-wrap:wrap;gap:10px} .figs img{max-width:380px;border:1px solid #eee}
.tw{overflow-x:auto} .note{color:#555;font-size:0.9em} img.grid,img.figure{max-width:100%} .extra img{max-width:100%;margin-bottom:6px}
details{margin:0.5em 0} summary{cursor:pointer;font-weight:600}
#summary{border:1px solid #cfd8e3;border-radius:6px;padding:6px 14px 8px;background:#fafcff}
#summary h2{margin:0.2em 0 0.3em;border:0;font-size:1.15em}
#summary .ctx{margin:0;color:#555;font-size:0.88em}
#summary ul{list-style:none;padding:0;margin:0.3em 0 0.5em} #summary li{margin:0.15em 0;font-size:0.92em}
.badge{display:inline-block;min-width:12.5em;padding:1px 6px;border-radius:3px;color:#fff;font-size:0.85em;
 font-weight:600;text-align:center;margin-right:6px}
.yes{background:#0072B2} .mixed{background:#E69F00;color:#000} .no{background:#A63D00} .unknown{background:#777}
.sumtabs{display:flex;flex-wrap:wrap;gap:6px 22px;align-items:flex-start}
.sumtabs table{margin:0.2em 0;font-size:0.84em} .sumtabs th,.sumtabs td{padding:2px 7px;white-space:nowrap}
.sumtabs caption{text-align:left;font-weight:600;font-size:0.9em;padding-bottom:2px}
.gain-up{color:#0060A0;font-weight:600} .gain-down{color:#B04A00;font-weight:600} .gain-same{color:#666}
"""


def _img(path: Path, cls: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = IMAGE_SUFFIXES.get(path.suffix.lower(), "image/png")
    return f'<img class="{cls}" alt="{html.escape(path.stem)}" src="data:{mime};base64,{data}">'


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(display(m))} {arrow(m)}</th>" for m in t.metrics)
    out = [f'<table><tr><th class="l">Method</th><th class="l">Config</th><th>n</th>{head}</tr>']
    for label, method, config, n in t.rows:
        name = label.replace(f" ({config})", "") if config else label
        cells = []
        for m in t.metrics:
            c = t.cells.get((label, m))
            cls = ' class="best"' if c is not None and c.best else ""
            cells.append(f"<td{cls}>{html.escape(_cell_text(t, label, m))}</td>")
        out.append(f'<tr><td class="l">{html.escape(name)}</td><td class="l">{html.escape(config or "–")}</td>'
                   f"<td>{n}</td>{''.join(cells)}</tr>")  # fmt: skip
    return "\n".join(out + ["</table>"])


def _short_names(runs: list[RunResult]) -> dict[str, str]:
    """Run label -> its method name when no other run shares it, else the full label."""
    count: dict[str, int] = {}
    for r in runs:
        count[r.method] = count.get(r.method, 0) + 1
    return {r.label: r.method if count[r.method] == 1 else r.label for r in runs}


def _delta(metric: str, new: float, old: float, digits: int | None = None, hib: bool | None = None) -> str:
    """The signed difference new - old, marked ✓ (better) or ✗ (worse) in the metric's direction, or = when the
    two are equal (or read the same at ``digits``)."""
    b = better(metric, new, old, hib)
    if b is None:
        return ""
    if new == old or (digits is not None and same_shown(new, old, digits)):
        zero = f"{0:.{digits}f}" if digits is not None else "0"
        return f' <span class="gain-same">±{zero} =</span>'
    d = new - old
    if math.isinf(d):
        text = "+∞" if d > 0 else "−∞"
    else:
        body = f"{abs(d):.{digits}f}" if digits is not None else fmt(metric, abs(d))
        text = ("+" if d >= 0 else "−") + body
    return f' <span class="{"gain-up" if b else "gain-down"}">{text} {"✓" if b else "✗"}</span>'


def summary_html(s: Summary, runs: list[RunResult]) -> str:
    """The summary block (id="summary"): verdict sentences, best method per metric and mode, downstream judges."""
    short = _short_names(runs)
    base = short.get(s.baseline or "", "untranslated")
    parts = ['<section id="summary">', f'<p class="ctx">{html.escape(s.context)}</p>',
             "<h2>Verdict: does harmonization beat doing nothing (the untranslated frames)?</h2>"]  # fmt: skip
    if s.verdicts:
        parts.append("<ul>")
        for v in s.verdicts:
            cls = {YES: "yes", NO: "no", MIXED: "mixed"}.get(v.word, "unknown")
            parts.append(f'<li><span class="badge {cls}">{html.escape(v.word)}</span><b>{html.escape(short[v.label])}'
                         f"</b>: {html.escape(v.sentence)}</li>")  # fmt: skip
        parts.append("</ul>")
        parts.append(f'<p class="note">{html.escape(VERDICT_RULE)}</p>')
    else:
        parts.append('<p class="note">No untranslated run among the inputs: gains cannot be computed (the demo and '
                     "the study pipeline add one; report it together with the methods).</p>")  # fmt: skip
    parts.append('<div class="sumtabs">')
    if s.metrics:
        heads = "".join(f"<th>{html.escape(MODE_SHORT.get(m, m))}{'*' if m in NO_GAIN_MODES else ''}</th>"
                        for m in s.modes)  # fmt: skip
        rows = [f'<table class="best"><caption>Best method per metric (difference vs {html.escape(base)})</caption>'
                f'<tr><th class="l">Metric</th>{heads}</tr>']  # fmt: skip
        for m in s.metrics:
            cells = []
            for mode in s.modes:
                b = s.best.get((mode, m))
                if b is None:
                    cells.append("<td>–</td>")
                    continue
                names = html.escape(", ".join(short[lbl] for lbl in b.labels))
                gain = "" if mode in NO_GAIN_MODES else _delta(m, b.value, b.baseline)
                cells.append(f"<td>{names} {fmt(m, b.value)}{gain}</td>")
            rows.append(f'<tr><td class="l">{html.escape(display(m))} {arrow(m)}</td>{"".join(cells)}</tr>')
        rows.append("</table>")
        parts.append("\n".join(rows))
    if s.downstream:
        shown = [lbl for lbl in short if lbl != s.baseline and any(lbl in d.harmonized for d in s.downstream)]
        heads = "".join(f"<th>{html.escape(short[lbl])}</th>" for lbl in shown)
        rows = ['<table class="down"><caption>Downstream (target-domain judges)</caption>'
                f'<tr><th class="l">Judge</th><th>raw ({html.escape(base)})</th>{heads}<th>ceiling (GT)</th>'
                "</tr>"]  # fmt: skip
        for d in s.downstream:
            j = d.judge
            unit = f" ({j.unit})" if j.unit else ""
            val = lambda v: "–" if math.isnan(v) else f"{v:.{j.digits}f}"  # noqa: E731
            cells = [f"<td>{val(d.raw)}</td>"]
            for lbl in shown:
                h = d.harmonized.get(lbl, math.nan)
                cells.append(f"<td>{val(h)}{_delta(j.name, h, d.raw, j.digits, j.higher_is_better)}</td>")
            cells.append(f"<td>{val(d.ceiling)}</td>")
            rows.append(f'<tr><td class="l">{html.escape(j.name)}{unit} {"↑" if j.higher_is_better else "↓"}</td>'
                        f"{''.join(cells)}</tr>")  # fmt: skip
        rows.append("</table>")
        parts.append("\n".join(rows))
    parts.append("</div>")
    foot = ["✓ better / ✗ worse / = the same as the untranslated frames"]
    if any(m in NO_GAIN_MODES for m in s.modes):
        foot.append("* the untranslated frames equal their source by construction: no difference shown")
    parts.append(f'<p class="note" style="margin:0.2em 0 0">{html.escape("; ".join(foot))}.</p></section>')
    return "\n".join(parts)


def _tables_html(runs: list[RunResult], tables: list[Table]) -> list[str]:
    parts = ["<h2>Tables</h2>", '<p class="note">Mean ± std over frames; best per column in bold.</p>']
    for t in tables:
        parts.append(f"<h3>Reference: {html.escape(t.mode)} — {html.escape(MODE_TITLE.get(t.mode, t.mode))}</h3>")
        parts.append(f'<div class="tw">{_table(t)}</div>')
    seg = segmentation_frame(runs)
    if not seg.empty:
        parts.append("<h3>Downstream segmentation</h3><table><tr><th class='l'>Run</th><th class='l'>Input</th>"
                     "<th>n</th><th>Dice ↑</th><th>HD95 (px) ↓</th></tr>")  # fmt: skip
        for _, d in seg.iterrows():
            cells = []
            for m in ("dice", "hd95"):
                cls = ' class="best"' if d[f"{m}_best"] else ""
                cells.append(f"<td{cls}>{html.escape(_pm(m, d[f'{m}_mean'], d[f'{m}_std'], False))}</td>")
            parts.append(f"<tr><td class='l'>{html.escape(d['label'])}</td><td class='l'>{html.escape(d['variant'])}"
                         f"</td><td>{d['n']}</td>{''.join(cells)}</tr>")  # fmt: skip
        parts.append("</table><p class='note'>Target-domain segmenter applied to the source frame, the harmonized "
                     "output and the ground truth; scored against the source frame's label map.</p>")  # fmt: skip
    jf = judges_frame(runs)
    if not jf.empty:
        parts.append("<h3>Downstream plane classification and gestational age</h3><table><tr><th class='l'>Run</th>"
                     "<th class='l'>Input</th><th>n</th><th>Plane accuracy ↑</th><th>Plane macro-F1 ↑</th>"
                     "<th>head frames</th><th>head found</th><th>GA error (days) ↓</th></tr>")  # fmt: skip
        for _, d in jf.iterrows():
            cells = []
            for col, digits in (("plane_accuracy", 3), ("plane_macro_f1", 3)):
                cls = ' class="best"' if d[f"{col}_best"] else ""
                cells.append(f"<td{cls}>{_judge_cell(d, col, digits, bold=False)}</td>")
            n = lambda v: "–" if math.isnan(float(v)) else str(int(v))  # noqa: E731
            cls = ' class="best"' if d["ga_mean_best"] else ""
            parts.append(f"<tr><td class='l'>{html.escape(d['label'])}</td><td class='l'>{html.escape(d['variant'])}"
                         f"</td><td>{n(d['plane_n'])}</td>{''.join(cells)}<td>{n(d['ga_n'])}</td>"
                         f"<td>{_judge_num(d['head_found'], 2)}</td>"
                         f"<td{cls}>{html.escape(_judge_cell(d, 'ga_mean', 1, bold=False))}</td></tr>")  # fmt: skip
        parts.append("</table><p class='note'>A plane classifier and a GA estimator trained on the target domain "
                     "only (frozen) judge the source frame, the harmonized output and the ground truth. Macro-F1 "
                     "next to accuracy: the classes are unbalanced. GA: head-plane frames; the head segmented, an "
                     "ellipse fitted, HC (mm) -> GA by Hadlock; |error| in days over the frames with a head found "
                     "(mean ± std).</p>")  # fmt: skip
    dist = distribution_frame(runs)
    if not dist.empty:
        parts.append("<h3>Distribution level</h3><table><tr><th class='l'>Run</th><th class='l'>Reference</th>"
                     "<th>FID ↓</th><th>KID ↓</th><th>BC (dataset) ↑</th></tr>")  # fmt: skip
        for _, d in dist.iterrows():
            parts.append(f"<tr><td class='l'>{html.escape(d['label'])}</td><td class='l'>{d['reference']}</td>"
                         f"<td>{fmt('fid', d['fid'])}</td><td>{fmt('kid', d['kid'])}</td>"
                         f"<td>{fmt('bc', d['bc_dataset'])}</td></tr>")  # fmt: skip
        parts.append(f"</table><p class='note'>FID/KID features: {html.escape(str(dist['extractor'].iloc[0]))}.</p>")
    return parts


def render_html(
    runs: list[RunResult],
    tables: list[Table],
    violins: dict[str, list[Path]],
    grid: Path | None,
    extra: Sequence[tuple[ExtraSection, list[Path]]] = (),
    summary: Summary | None = None,
    figure: Path | None = None,
) -> str:
    """The report page as one HTML string (no external files); ``extra``: (section, its image files) pairs shown
    after the tables."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>sonoshift report</title>',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<style>{CSS}</style></head><body>", "<h1>sonoshift report</h1>"]  # fmt: skip
    for r in runs:  # a model scored on patients it was trained on: said first, in red
        if r.meta.get("leakage"):
            parts.append(f'<p class="leakage" style="color:#c00;font-weight:bold">Leakage: {html.escape(r.label)} — '
                         f"{html.escape(str(r.meta['leakage'].get('note', 'trained on test patients')))}; its scores "
                         "measure memorization, not harmonization.</p>")
    if summary is not None:
        parts.append(summary_html(summary, runs))
    if figure is not None:
        parts += ["<h2>Qualitative comparison</h2>", _img(figure, "figure"),
                  '<p class="note">A typical test frame (median SSIM over the methods). Top: every panel on the same '
                  "grey scale (0–255, no per-panel stretching). Bottom: the source frame's anatomy label map (inner "
                  "edge) and, when a segmenter was run, its prediction on that panel (outer edge) with the frame's "
                  "Dice. Colours: Okabe–Ito palette, each line on a dark halo.</p>"]  # fmt: skip
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes(runs)) + "</ul>")
    parts += _tables_html(runs, tables)
    for section, images in extra:
        parts.append(section_html(section, [_img(p, "extra") for p in images]))
    if any(violins.values()):
        parts.append("<h2>Distributions over frames</h2>")
        for mode, paths in violins.items():
            if paths:
                parts.append(f"<details><summary>Violin plots — {html.escape(mode)}: "
                             f"{html.escape(MODE_TITLE.get(mode, mode))} ({len(paths)})</summary>"
                             '<div class="figs">' + "".join(_img(p) for p in paths) + "</div></details>")  # fmt: skip
    if grid is not None:
        seg_note = ("Sky-blue outlines: the source frame's anatomy label map (inner edge). Coloured outlines: the "
                    "target-domain segmenter's predicted classes on that panel (outer edge; see the legend), with the "
                    "frame's Dice under it." if any(not r.segmentation.empty for r in runs) else "")  # fmt: skip
        parts.append("<details><summary>More frames (qualitative grid)</summary>" + _img(grid, "grid")
                     + (f"<p class='note'>{seg_note}</p>" if seg_note else "") + "</details>")  # fmt: skip
    parts.append("<details><summary>Runs</summary><ul>" + "".join(
        f"<li><b>{html.escape(r.label)}</b> — {html.escape(str(r.run_dir))}</li>" for r in runs) + "</ul></details>")
    parts.append("</body></html>")
    return "\n".join(parts)
