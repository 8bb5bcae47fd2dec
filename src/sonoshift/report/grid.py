"""Qualitative grid (the paper's Figure 4): rows are frames; columns are the source, each run's output, and the
references (paired target, ground truth when present). Optional outlines: the anatomy label map and, when runs
carry the downstream ``segmentation.csv``, the segmenter's prediction on each panel."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sonoshift.atomic import atomic_file  # noqa: E402
from sonoshift.errors import SonoshiftError  # noqa: E402
from sonoshift.io.images import read_gray  # noqa: E402
from sonoshift.report.load import RunResult  # noqa: E402
from sonoshift.report.outlines import GT_COLOR, LABEL_COLORS, PRED_COLORS, draw_outlines  # noqa: E402
from sonoshift.runs import open_run, resolve  # noqa: E402

__all__ = ["GT_COLOR", "LABEL_COLORS", "PRED_COLORS", "GridContent", "Predictions", "draw_outlines", "grid_content",
           "pick_frames", "qualitative_grid"]

DPI = 100


def _outputs_by_source(run: RunResult) -> tuple[dict[str, dict[str, str]], Path]:
    folder = open_run(run.run_dir)
    return {r["source_path"]: r for r in folder.outputs()}, folder.dataset_root


def pick_frames(runs: list[RunResult], n: int) -> list[str]:
    """Up to ``n`` source frames translated by every run, evenly spread over the sorted common list."""
    common: set[str] | None = None
    for r in runs:
        keys = set(_outputs_by_source(r)[0])
        common = keys if common is None else common & keys
    ordered = sorted(common or [])
    if len(ordered) <= n:
        return ordered
    idx = np.linspace(0, len(ordered) - 1, n).round().astype(int)
    return [ordered[i] for i in idx]


def _frame_id(patient: object, video: object, frame: object) -> tuple[str, str, str]:
    """A frame's identity as (patient, video, frame index) strings; 3, "3" and 3.0 name the same frame."""
    def s(v: object) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()

    f = s(frame)
    try:
        f = str(int(float(f)))
    except ValueError:
        pass
    return s(patient), s(video), f


class Predictions:
    """A run's predicted masks (``segmentation.csv`` + ``segmentation_masks/``): the mask of a frame and variant
    (source / harmonized / ground_truth), its Dice, and the segmenter's foreground class names."""

    def __init__(self, run: RunResult) -> None:
        seg = run.segmentation
        self.run_dir = run.run_dir
        self.classes = [c[5:] for c in seg.columns if c.startswith("dice_") and c != "dice_mean"]
        self.rows: dict[tuple[str, str, str, str], pd.Series] = {}
        need = {"variant", "pred_path", "patient_id", "video_id", "frame_index"}
        if seg.empty or not need <= set(seg.columns):
            return
        for _, r in seg.iterrows():
            if isinstance(r["pred_path"], str) and r["pred_path"]:
                self.rows[(str(r["variant"]), *_frame_id(r["patient_id"], r["video_id"], r["frame_index"]))] = r

    def __bool__(self) -> bool:
        return bool(self.rows)

    def get(self, variant: str, row: dict[str, str]) -> tuple[np.ndarray | None, str]:
        """(predicted class ids (H, W) or None, "Dice 0.83" or "") for one outputs.csv row and variant."""
        r = self.rows.get((variant, *_frame_id(row.get("patient_id"), row.get("video_id"), row.get("frame_index"))))
        if r is None:
            return None, ""
        path = self.run_dir / str(r["pred_path"])
        try:
            mask = read_gray(path)
        except SonoshiftError:
            raise SonoshiftError(f"predicted mask {path} listed in {self.run_dir / 'segmentation.csv'} "
                                 "cannot be read; re-run the downstream segmentation.") from None  # fmt: skip
        dice = r.get("dice_mean")
        return mask, (f"Dice {float(dice):.2f}" if dice is not None and np.isfinite(float(dice)) else "")


def _score(run: RunResult, output_path: str, mode: str = "target") -> str:
    sub = run.rows[(run.rows["reference"] == mode) & (run.rows["output_path"] == output_path)]
    if sub.empty or "ssim" not in sub.columns:
        return ""
    row = sub.iloc[0]
    return f"SSIM {row['ssim']:.3f}  PSNR {row['psnr']:.1f}"


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


@dataclass
class GridContent:
    """What the grid shows: column titles, per frame a row label and (RGB image or None, caption) panels, and
    what the legend must explain."""

    titles: list[str]
    row_labels: list[str]
    panels: list[list[tuple[np.ndarray | None, str]]]
    has_target: bool
    saw_labels: bool
    classes: list[str] | None  # predicted class names when predictions are drawn, else None


def grid_content(runs: list[RunResult], frames: list[str], overlays: bool = True, panel_px: int = 256) -> GridContent:
    """Panels for ``frames`` (source paths from outputs.csv, shared by every run).

    Frames are upsampled (nearest, integer factor) so each panel is about ``panel_px`` pixels on its longer side.
    With ``overlays``: the source frame's label map is outlined on the source, output and ground-truth panels;
    when runs carry ``segmentation.csv``, the segmenter's prediction on each panel is outlined too (source and
    ground truth from the first run that has them, each output from its own run; the paired target has none),
    its Dice goes under the panel, and the ground-truth outlines turn to one colour (sky blue) so the two cannot be
    confused.
    """
    per_run = [_outputs_by_source(r) for r in runs]
    preds = [Predictions(r) if overlays else None for r in runs]
    first, root = per_run[0]
    has_gt = any(first[s].get("gt_path") for s in frames)
    has_tgt = any(first[s].get("target_path") for s in frames)
    ref_pred = next((p for p in preds if p), None)  # source and ground-truth predictions come from here
    label_color = GT_COLOR if ref_pred is not None else None
    titles = ["Source"] + [r.label.replace(" (", "\n(") for r in runs]
    titles += (["Target (paired)"] if has_tgt else []) + (["Ground truth"] if has_gt else [])
    h0, w0 = read_gray(resolve(frames[0], root)).shape
    scale = max(1, math.ceil(panel_px / max(h0, w0)))
    content = GridContent(titles, [], [], has_tgt, False, None)
    if ref_pred is not None:
        content.classes = ref_pred.classes or [f"class {k}" for k in range(1, len(PRED_COLORS) + 1)]
    for src in frames:
        row0 = first[src]
        labels = None
        if overlays and row0.get("label_path"):
            labels = read_gray(resolve(row0["label_path"], root))
            content.saw_labels = True

        def draw(img_path: Path, pred: np.ndarray | None, lab: np.ndarray | None = labels) -> np.ndarray:
            return draw_outlines(read_gray(img_path), lab, pred, scale, label_color)

        p, dice = ref_pred.get("source", row0) if ref_pred else (None, "")
        panels: list[tuple[np.ndarray | None, str]] = [(draw(resolve(src, root), p), dice)]
        for run, (rows, _), pr in zip(runs, per_run, preds):
            r = rows[src]
            p, dice = pr.get("harmonized", r) if pr else (None, "")
            panels.append((draw(run.run_dir / r["output_path"], p), _join(_score(run, r["output_path"]), dice)))
        if has_tgt:
            t = row0.get("target_path")
            panels.append((draw(resolve(t, root), None, None) if t else None, ""))
        if has_gt:
            g = row0.get("gt_path")
            p, dice = ref_pred.get("ground_truth", row0) if ref_pred else (None, "")
            panels.append((draw(resolve(g, root), p) if g else None, dice))
        content.panels.append(panels)
        content.row_labels.append(Path(src).parent.parent.name + "/" + Path(src).stem)
    return content


def qualitative_grid(
    runs: list[RunResult], path: Path, n_frames: int = 4, overlays: bool = True, panel_px: int = 256
) -> Path | None:
    """Write the grid PNG (``grid_content`` of up to ``n_frames`` shared frames, with a legend) to ``path``;
    None when the runs share no source frame."""
    frames = pick_frames(runs, n_frames)
    if not frames:
        return None
    c = grid_content(runs, frames, overlays, panel_px)
    ph, pw = next(img.shape[:2] for img, _ in c.panels[0] if img is not None)
    n_cols, n_rows = len(c.titles), len(c.panels)
    legend_h = 0.75 if c.classes is not None else 0.3
    cell_w, cell_h = pw / DPI + 0.25, ph / DPI + 0.7  # room for titles and captions
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_w * n_cols, cell_h * n_rows + legend_h), dpi=DPI,
                             squeeze=False)  # fmt: skip
    for i, panels in enumerate(c.panels):
        for j, (img, caption) in enumerate(panels):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if img is not None:
                ax.imshow(img, interpolation="nearest")
            if caption:
                ax.set_xlabel(caption, fontsize=7)
            if i == 0:
                ax.set_title(c.titles[j], fontsize=8)
        axes[i, 0].set_ylabel(c.row_labels[i], fontsize=7)
    notes = ["SSIM/PSNR under outputs: vs paired target"] if c.has_target else []
    handles = []
    if c.saw_labels:
        if c.classes is not None:
            handles.append(Line2D([], [], color=GT_COLOR, lw=2, label="ground-truth label map (inner edge)"))
        else:
            notes.append("outlines: anatomy label map of the source frame")
    if c.classes is not None:
        handles += [Line2D([], [], color=PRED_COLORS[k % len(PRED_COLORS)], lw=2, label=f"predicted {n} (outer edge)")
                    for k, n in enumerate(c.classes)]  # fmt: skip
        notes.append("segmenter prediction on each panel; Dice vs the source label map")
    note = "; ".join(notes)
    bottom = legend_h / fig.get_figheight()
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, 0.3 * bottom))  # fmt: skip
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
