"""Qualitative grid (the paper's Figure 4): rows are frames; columns are the source, each run's output, and the
references (paired target, ground truth when present); optional outlines of the anatomy label map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from sonoshift.atomic import atomic_file  # noqa: E402
from sonoshift.evaluate import dataset_root, read_gray, read_outputs, resolve  # noqa: E402
from sonoshift.report.load import RunResult  # noqa: E402

# Label colours (class 1, 2, ...), RGB in [0, 1].
LABEL_COLORS = np.array(
    [[0.95, 0.25, 0.2], [0.2, 0.8, 0.3], [0.25, 0.55, 1.0], [1.0, 0.8, 0.1], [0.85, 0.3, 0.9], [0.1, 0.9, 0.9]]
)


def overlay(gray: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """uint8 (H, W) image -> RGB float (H, W, 3) with each label class outlined in its colour (if labels given)."""
    rgb = np.repeat(gray[..., None].astype(np.float64) / 255, 3, axis=2)
    if labels is None:
        return rgb
    for k in np.unique(labels):
        if k == 0:
            continue
        edge = find_boundaries(labels == k, mode="inner")
        rgb[edge] = LABEL_COLORS[(int(k) - 1) % len(LABEL_COLORS)]
    return rgb


def _outputs_by_source(run: RunResult) -> tuple[dict[str, dict[str, str]], Path]:
    import json

    meta = json.loads((run.run_dir / "run.json").read_text(encoding="utf-8"))
    return {r["source_path"]: r for r in read_outputs(run.run_dir)}, dataset_root(run.run_dir, meta)


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


def _score(run: RunResult, output_path: str, mode: str = "target") -> str:
    sub = run.rows[(run.rows["reference"] == mode) & (run.rows["output_path"] == output_path)]
    if sub.empty or "ssim" not in sub.columns:
        return ""
    row = sub.iloc[0]
    return f"SSIM {row['ssim']:.3f}  PSNR {row['psnr']:.1f}"


def qualitative_grid(runs: list[RunResult], path: Path, n_frames: int = 4, overlays: bool = True) -> Path | None:
    """Write the grid PNG to ``path``; None when the runs share no source frame."""
    frames = pick_frames(runs, n_frames)
    if not frames:
        return None
    per_run = [_outputs_by_source(r) for r in runs]
    first, root = per_run[0]
    has_gt = any(first[s].get("gt_path") for s in frames)
    has_tgt = any(first[s].get("target_path") for s in frames)
    titles = ["Source"] + [r.label.replace(" (", "\n(") for r in runs]
    titles += (["Target (paired)"] if has_tgt else []) + (["Ground truth"] if has_gt else [])
    n_cols, n_rows = len(titles), len(frames)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.05 * n_rows + 0.5), dpi=110, squeeze=False)
    for i, src in enumerate(frames):
        row0 = first[src]
        labels = None
        if overlays and row0.get("label_path"):
            labels = read_gray(resolve(row0["label_path"], root))
        panels = [(overlay(read_gray(resolve(src, root)), labels), "")]
        for run, (rows, _) in zip(runs, per_run):
            r = rows[src]
            panels.append((overlay(read_gray(run.run_dir / r["output_path"]), labels), _score(run, r["output_path"])))
        if has_tgt:
            t = row0.get("target_path")
            panels.append((overlay(read_gray(resolve(t, root)), None) if t else None, ""))
        if has_gt:
            g = row0.get("gt_path")
            panels.append((overlay(read_gray(resolve(g, root)), labels) if g else None, ""))
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
                ax.set_title(titles[j], fontsize=8)
        axes[i, 0].set_ylabel(Path(src).parent.parent.name + "/" + Path(src).stem, fontsize=7)
    notes = ["scores under outputs: vs paired target"] if has_tgt else []
    if overlays and any(first[s].get("label_path") for s in frames):
        notes.append("outlines: anatomy label map of the source frame")
    note = "; ".join(notes)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.02 if note else 0, 1, 1))
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
