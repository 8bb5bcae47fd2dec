"""The qualitative figure in the style of the harmonization paper's Figure 4, for one typical frame.

Row 1: plain B-mode panels on one shared intensity scale (grey levels 0-255, never stretched per panel): the
source frame, each method's output, the paired target and the ground truth. Row 2: the same panels with the
segmentation outlines: the source frame's label map (inner edge) and, when runs carry ``segmentation.csv``, the
segmenter's prediction on that panel (outer edge) with its Dice. The untranslated run is the source column.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patheffects as pe  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sonoshift.atomic import atomic_file  # noqa: E402
from sonoshift.io.images import read_gray  # noqa: E402
from sonoshift.report.grid import Predictions, _outputs_by_source, pick_frames, resolve  # noqa: E402
from sonoshift.report.load import RunResult  # noqa: E402
from sonoshift.report.outlines import GT_COLOR, LABEL_COLORS, PRED_COLORS, draw_outlines, upsample  # noqa: E402
from sonoshift.report.summary import UNTRANSLATED  # noqa: E402

DPI = 100
LINE_PX = 2  # outline width in figure pixels
HALO = [pe.withStroke(linewidth=4.5, foreground="black")]


def _scores(run: RunResult, mode: str) -> dict[str, float]:
    """{output_path: SSIM} of ``run`` under reference ``mode``."""
    sub = run.rows[run.rows["reference"] == mode]
    if sub.empty or "ssim" not in sub.columns:
        return {}
    return dict(zip(sub["output_path"].astype(str), sub["ssim"].astype(float)))


def typical_frame(runs: list[RunResult], mode: str) -> str | None:
    """The shared source frame whose SSIM under ``mode``, averaged over the runs, is the median one (so the figure
    shows an ordinary frame, not the best); the first shared frame when there is no SSIM."""
    frames = pick_frames(runs, 10**9)
    if not frames:
        return None
    per_run = [(_outputs_by_source(r)[0], _scores(r, mode)) for r in runs]
    avg = []
    for f in frames:
        v = [s.get(rows[f]["output_path"], math.nan) for rows, s in per_run]
        avg.append(float(np.nanmean(v)) if not all(math.isnan(x) for x in v) else math.nan)
    if all(math.isnan(a) for a in avg):
        return frames[0]
    order = sorted((a, f) for a, f in zip(avg, frames) if not math.isnan(a))
    return order[(len(order) - 1) // 2][1]


def _caption(run: RunResult, output_path: str, mode: str) -> str:
    sub = run.rows[(run.rows["reference"] == mode) & (run.rows["output_path"] == output_path)]
    if sub.empty or "ssim" not in sub.columns:
        return ""
    r = sub.iloc[0]
    psnr = f"  PSNR {r['psnr']:.1f}" if "psnr" in sub.columns and np.isfinite(r["psnr"]) else ""
    return f"SSIM {r['ssim']:.3f}{psnr}"


@dataclass
class Panel:
    """One column: title, the plain frame (uint8, as read), the frame with its outlines (RGB in [0, 1], or None
    when it is not segmented) and the captions under each row."""

    title: str
    gray: np.ndarray
    outlined: np.ndarray | None
    caption: str = ""
    outline_caption: str = ""


@dataclass
class FigureContent:
    frame: str  # the source frame shown (outputs.csv source_path)
    mode: str  # the reference of the SSIM/PSNR captions
    scale: int  # nearest upsampling factor of every panel
    panels: list[Panel]
    outlines: bool  # whether the second row is drawn
    classes: list[str] | None  # predicted class names when predictions are drawn
    labels_present: list[int]  # label-map classes in the frame (legend when there are no predictions)


def figure_content(runs: list[RunResult], overlays: bool = True, panel_px: int = 192) -> FigureContent | None:
    """The panels of the figure for ``typical_frame``: source, every run but the untranslated one, the paired
    target and the ground truth; None when the runs share no source frame."""
    mode = "gt" if any((r.rows["reference"] == "gt").any() for r in runs) else "target"
    src = typical_frame(runs, mode)
    if src is None:
        return None
    shown = [r for r in runs if r.method != UNTRANSLATED] or runs
    per_run = {r.label: _outputs_by_source(r) for r in runs}
    rows0, root = per_run[runs[0].label]
    row0 = rows0[src]
    preds = {r.label: Predictions(r) for r in runs} if overlays else {}
    ref_pred = next((p for p in preds.values() if p), None)
    labels = read_gray(resolve(row0["label_path"], root)) if overlays and row0.get("label_path") else None
    outlines = labels is not None or ref_pred is not None
    h0, w0 = read_gray(resolve(src, root)).shape
    scale = max(1, math.ceil(panel_px / max(h0, w0)))
    label_color = GT_COLOR if ref_pred is not None else None

    def panel(title: str, path: Path, pred: np.ndarray | None, cap: str, dice: str, segmented: bool = True) -> Panel:
        g = read_gray(path)
        drawn = draw_outlines(g, labels, pred, scale, label_color, line_px=LINE_PX) if outlines and segmented else None
        return Panel(title, g, drawn, cap, dice)

    p, dice = ref_pred.get("source", row0) if ref_pred else (None, "")
    domain = runs[0].meta.get("source_domain", "")
    panels = [panel(f"Source\n({domain})" if domain else "Source", resolve(src, root), p, "", dice)]
    for r in shown:
        rr = per_run[r.label][0][src]
        p, dice = preds[r.label].get("harmonized", rr) if r.label in preds else (None, "")
        panels.append(panel(r.label.replace(" (", "\n("), r.run_dir / rr["output_path"], p,
                            _caption(r, rr["output_path"], mode), dice))  # fmt: skip
    if row0.get("target_path"):
        panels.append(panel("Target\n(paired)", resolve(row0["target_path"], root), None, "", "", segmented=False))
    if row0.get("gt_path"):
        p, dice = ref_pred.get("ground_truth", row0) if ref_pred else (None, "")
        panels.append(panel("Ground truth\n(target profile)", resolve(row0["gt_path"], root), p, "", dice))
    classes = None
    if ref_pred is not None:
        classes = ref_pred.classes or [f"class {k}" for k in range(1, len(PRED_COLORS) + 1)]
    present = sorted(int(k) for k in np.unique(labels) if k) if labels is not None else []
    return FigureContent(src, mode, scale, panels, outlines, classes, present)


def _bare(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _wrap_title(title: str, width: int = 26) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def draw_figure(c: FigureContent) -> plt.Figure:
    """Row 1: every plain panel with the same grey map, black = 0 and white = 255 (one colour bar for all); row 2
    (when ``c.outlines``): the outlined panels and a legend."""
    h0, w0 = c.panels[0].gray.shape
    n_rows, n_cols = (2 if c.outlines else 1), len(c.panels)
    ph, pw = h0 * c.scale / DPI, w0 * c.scale / DPI
    legend_h = 0.45 if c.outlines else 0.0
    titles = [_wrap_title(p.title) for p in c.panels]
    title_h = 0.17 * max(t.count("\n") + 1 for t in titles) + 0.2  # 9 pt lines; the figure grows with the longest
    fig = plt.figure(figsize=(pw * n_cols + 1.3, (ph + 0.75) * n_rows + title_h - 0.35 + legend_h), dpi=DPI)
    grid = fig.add_gridspec(n_rows, n_cols + 1, width_ratios=[1] * n_cols + [0.06], wspace=0.05, hspace=0.25,
                            left=0.75 / fig.get_figwidth(), right=1 - 0.4 / fig.get_figwidth(),
                            top=1 - title_h / fig.get_figheight(),
                            bottom=(legend_h + 0.35) / fig.get_figheight())  # fmt: skip
    im = None
    for j, p in enumerate(c.panels):
        ax = fig.add_subplot(grid[0, j])
        im = ax.imshow(upsample(p.gray, c.scale), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(titles[j], fontsize=9)
        ax.set_xlabel(p.caption, fontsize=8)
        _bare(ax)
        if j == 0:
            ax.set_ylabel("B-mode\n(one grey scale)", fontsize=9)
        if n_rows == 2:
            ax2 = fig.add_subplot(grid[1, j])
            if p.outlined is not None:
                ax2.imshow(p.outlined, interpolation="nearest")
            else:
                ax2.imshow(np.full((h0 * c.scale, w0 * c.scale, 3), 0.93), interpolation="nearest")
                ax2.text(0.5, 0.5, "not segmented", ha="center", va="center", fontsize=8, color="dimgray",
                         transform=ax2.transAxes)  # fmt: skip
            ax2.set_xlabel(p.outline_caption, fontsize=8)
            _bare(ax2)
            if j == 0:
                ax2.set_ylabel("Segmentation\noutlines", fontsize=9)
    cax = fig.add_subplot(grid[0, n_cols])
    fig.colorbar(im, cax=cax, ticks=[0, 128, 255]).ax.tick_params(labelsize=7)
    cax.set_title("grey\nlevel", fontsize=7)
    if c.outlines:
        if c.classes is not None:
            handles = [Line2D([], [], color=GT_COLOR, lw=2, path_effects=HALO, label="label map (inner edge)")]
            handles += [Line2D([], [], color=PRED_COLORS[k % len(PRED_COLORS)], lw=2, path_effects=HALO,
                               label=f"predicted {n}") for k, n in enumerate(c.classes)]  # fmt: skip
        else:
            handles = [Line2D([], [], color=LABEL_COLORS[(k - 1) % len(LABEL_COLORS)], lw=2, path_effects=HALO,
                              label=f"label {k}") for k in c.labels_present]  # fmt: skip
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False,
                       bbox_to_anchor=(0.5, 0.02))  # fmt: skip
    return fig


def qualitative_figure(runs: list[RunResult], path: Path, overlays: bool = True, panel_px: int = 192) -> Path | None:
    """Write the figure (``figure_content`` drawn by ``draw_figure``) to ``path``; None when the runs share no
    source frame."""
    c = figure_content(runs, overlays, panel_px)
    if c is None:
        return None
    fig = draw_figure(c)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
