"""One self-contained HTML page: tables, violins and the qualitative grid, images inlined as base64."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from sonoshift.report.load import RunResult
from sonoshift.report.sections import IMAGE_SUFFIXES, ExtraSection, section_html
from sonoshift.report.table import (
    MODE_TITLE,
    Table,
    _cell_text,
    _pm,
    arrow,
    display,
    distribution_frame,
    fmt,
    notes,
    segmentation_frame,
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right} th{background:#f3f3f3}
td.l,th.l{text-align:left} td.best{font-weight:bold;background:#eef6ee}
.figs{display:flex;flex-wrap:wrap;gap:10px} .figs img{max-width:380px;border:1px solid #eee}
.note{color:#555;font-size:0.9em} img.grid{max-width:100%} .extra img{max-width:100%;margin-bottom:6px}
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


def render_html(
    runs: list[RunResult],
    tables: list[Table],
    violins: dict[str, list[Path]],
    grid: Path | None,
    extra: Sequence[tuple[ExtraSection, list[Path]]] = (),
) -> str:
    """The report page as one HTML string (no external files); ``extra``: (section, its image files) pairs shown
    after the qualitative grid."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>sonoshift report</title>',
             f"<style>{CSS}</style></head><body>", "<h1>sonoshift report</h1>"]  # fmt: skip
    for r in runs:  # a model scored on patients it was trained on: said first, in red
        if r.meta.get("leakage"):
            parts.append(f'<p class="leakage" style="color:#c00;font-weight:bold">Leakage: {html.escape(r.label)} — '
                         f"{html.escape(str(r.meta['leakage'].get('note', 'trained on test patients')))}; its scores "
                         "measure memorization, not harmonization.</p>")
    parts.append("<h2>Runs</h2><ul>")
    for r in runs:
        parts.append(f"<li><b>{html.escape(r.label)}</b> — {html.escape(str(r.run_dir))}; "
                     f"{html.escape(str(r.meta.get('mask_note', '')))}; LPIPS: "
                     f"{html.escape(str(r.meta.get('lpips', 'n/a')))}</li>")  # fmt: skip
    parts.append("</ul>")
    for t in tables:
        parts.append(f"<h2>Reference: {html.escape(t.mode)} — {html.escape(MODE_TITLE.get(t.mode, t.mode))}</h2>")
        parts.append(_table(t))
        parts.append('<p class="note">Mean ± std over frames. ↑ higher is better, ↓ lower is better '
                     "(LPIPS, MAE: lower is better). Best per column in bold.</p>")  # fmt: skip
        if violins.get(t.mode):
            parts.append('<div class="figs">' + "".join(_img(p) for p in violins[t.mode]) + "</div>")
    seg = segmentation_frame(runs)
    if not seg.empty:
        parts.append("<h2>Downstream segmentation</h2><table><tr><th class='l'>Run</th><th class='l'>Input</th>"
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
    dist = distribution_frame(runs)
    if not dist.empty:
        parts.append("<h2>Distribution level</h2><table><tr><th class='l'>Run</th><th class='l'>Reference</th>"
                     "<th>FID ↓</th><th>KID ↓</th><th>BC (dataset) ↑</th></tr>")  # fmt: skip
        for _, d in dist.iterrows():
            parts.append(f"<tr><td class='l'>{html.escape(d['label'])}</td><td class='l'>{d['reference']}</td>"
                         f"<td>{fmt('fid', d['fid'])}</td><td>{fmt('kid', d['kid'])}</td>"
                         f"<td>{fmt('bc', d['bc_dataset'])}</td></tr>")  # fmt: skip
        parts.append(f"</table><p class='note'>FID/KID features: {html.escape(str(dist['extractor'].iloc[0]))}.</p>")
    if grid is not None:
        parts += ["<h2>Qualitative comparison</h2>", _img(grid, "grid")]
        if any(not r.segmentation.empty for r in runs):
            parts.append("<p class='note'>Cyan outlines: the source frame's anatomy label map (inner edge). Coloured "
                         "outlines: the target-domain segmenter's predicted classes on that panel (outer edge; see the "
                         "legend), with the frame's Dice under it.</p>")  # fmt: skip
    for section, images in extra:
        parts.append(section_html(section, [_img(p, "extra") for p in images]))
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes(runs)) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
