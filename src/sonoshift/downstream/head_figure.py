"""The fetal-head outline figure: the HC18 segmenter's head mask outline and its fitted ellipse on (a) raw
FETAL_PLANES_DB trans-thalamic images of each machine and (b) a run's source frames next to each method's
harmonized output, with the ellipse IoU (mask vs fitted ellipse, 1 = a perfect ellipse) under every panel.

Reads the tables of ``head_eval`` (image_path, pred_path, group, variant, name, ellipse_iou); paths in them are
absolute or relative to the table's folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from sonoshift.atomic import atomic_file  # noqa: E402
from sonoshift.downstream.ellipse import EllipseFit, ellipse_mask, fit_ellipse  # noqa: E402
from sonoshift.io.images import read_gray  # noqa: E402
from sonoshift.io.labels import read_labels  # noqa: E402
from sonoshift.errors import SonoshiftError  # noqa: E402

MASK_COLOR = np.array([1.0, 0.85, 0.0])  # yellow: the predicted head mask's edge
ELLIPSE_COLOR = np.array([0.0, 0.85, 1.0])  # cyan: the fitted ellipse's edge
NEED = ("image_path", "pred_path", "group", "variant", "name", "ellipse_iou")
DPI = 100


def read_heads_table(path: str | Path) -> pd.DataFrame:
    """A head_eval table with its image_path / pred_path made absolute (relative ones are relative to its folder)."""
    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"head table {path} does not exist (run the head evaluation first).")
    try:
        df = pd.read_csv(path, dtype={"name": str, "group": str, "variant": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise SonoshiftError(f"head table {path} is not a readable CSV file.") from None
    missing = [c for c in NEED if c not in df.columns]
    if missing:
        raise SonoshiftError(f"head table {path} lacks the column(s) {', '.join(missing)}.")
    for col in ("image_path", "pred_path"):
        df[col] = [str(p if Path(p).is_absolute() else path.parent / p) for p in df[col].astype(str)]
    return df


def scale_fit(fit: EllipseFit, sx: float, sy: float) -> EllipseFit:
    """The ellipse of an image resized by (sx, sy) (pixel centres at integer coordinates; sx ~ sy)."""
    s = (sx + sy) / 2
    return EllipseFit(cx=(fit.cx + 0.5) * sx - 0.5, cy=(fit.cy + 0.5) * sy - 0.5, a=fit.a * s, b=fit.b * s,
                      angle=fit.angle)  # fmt: skip


def head_panel(gray: np.ndarray, mask: np.ndarray, panel_px: int = 256) -> tuple[np.ndarray, EllipseFit | None]:
    """One panel: ``gray`` uint8 (H, W) resized so its longer side is ``panel_px`` (aspect kept; area when
    shrinking, nearest when enlarging), the head ``mask`` (bool, resized nearest to the image first if its size
    differs) outlined on its inner edge in MASK_COLOR, and the ellipse fitted to the mask at the image's own size
    (``ellipse.fit_ellipse``, as the ellipse IoU is measured), scaled to the panel, outlined on its outer edge in
    ELLIPSE_COLOR. Returns RGB float (h, w, 3) in [0, 1] and the panel's ellipse (None when none fits)."""
    h, w = gray.shape
    if mask.shape != gray.shape:
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    s = panel_px / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    img, m = gray, mask.astype(bool)
    if size != (w, h):
        img = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
        m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    rgb = np.repeat(img[..., None].astype(np.float64) / 255, 3, axis=2)
    rgb[find_boundaries(m, mode="inner")] = MASK_COLOR
    fit = fit_ellipse(mask)
    if fit is None:
        return rgb, None
    fit = scale_fit(fit, size[0] / w, size[1] / h)
    rgb[find_boundaries(ellipse_mask(fit, m.shape), mode="outer")] = ELLIPSE_COLOR
    return rgb, fit


def _even(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _wrap(name: str, width: int = 22) -> str:
    """A long frame name broken at underscores into lines of about ``width`` characters (row labels)."""
    lines = [""]
    for part in name.split("_"):
        if lines[-1] and len(lines[-1]) + 1 + len(part) > width:
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]}_{part}" if lines[-1] else part
    return "\n".join(lines)


def _iou_text(v: object) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "no head found"
    return "no head found" if math.isnan(f) else f"ellipse IoU {f:.2f}"


def _panel(row: pd.Series, panel_px: int) -> np.ndarray:
    return head_panel(read_gray(row["image_path"]), read_labels(row["pred_path"]) > 0, panel_px)[0]


def _draw(sub: matplotlib.figure.SubFigure, grid: list[list[tuple[np.ndarray, str] | None]], col_titles: list[str],
          row_titles: list[str], title: str) -> None:  # fmt: skip
    n_rows, n_cols = len(grid), max(len(r) for r in grid)
    axes = sub.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(grid):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            cell = row[j] if j < len(row) else None
            if cell is None:
                ax.set_visible(j == 0)
                continue
            ax.imshow(cell[0], interpolation="nearest")
            ax.set_xlabel(cell[1], fontsize=7)
            if col_titles and i == 0:
                ax.set_title(col_titles[j], fontsize=8)
        axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    sub.suptitle(title, fontsize=9, x=0.01, ha="left")


def head_outline_figure(
    out_png: str | Path,
    original_csv: str | Path | None = None,
    runs: Sequence[tuple[str, str | Path]] = (),
    *,
    per_machine: int = 3,
    max_frames: int = 4,
    panel_px: int = 200,
    variant: str = "raw",
) -> Path:
    """Write the head-outline PNG to ``out_png`` (atomically) and return its path.

    ``original_csv``: ``evaluate_heads_fpdb``'s table; part (a) shows up to ``per_machine`` images of each machine
    (``group``) of ``variant`` ("raw": the whole image), evenly spread over the sorted names. ``runs``: (method
    label, ``evaluate_heads_run`` table) pairs of one source domain; part (b) shows up to ``max_frames`` frames
    present in every run: the first run's "source" frame, then each run's "harmonized" output. Every panel shows
    the predicted mask's edge (yellow), the fitted ellipse (cyan) and the ellipse IoU; panels are about
    ``panel_px`` pixels on their longer side. Raises SonoshiftError when a table is bad or there is nothing to draw.
    """
    parts: list[tuple[list[list[tuple[np.ndarray, str] | None]], list[str], list[str], str]] = []
    if original_csv is not None:
        orig = read_heads_table(original_csv)
        orig = orig[orig["variant"] == variant]
        grid, names = [], []
        for machine in sorted(orig["group"].unique()):
            sub = orig[orig["group"] == machine].sort_values("name")
            rows = _even([r for _, r in sub.iterrows()], per_machine)
            grid.append([(_panel(r, panel_px), f"{r['name']}\n{_iou_text(r['ellipse_iou'])}") for r in rows])
            names.append(machine)
        if grid:
            parts.append((grid, [], names, f"(a) FETAL_PLANES_DB trans-thalamic heads per machine ({variant} images)"))
    if runs:
        tables = [(label, read_heads_table(p)) for label, p in runs]
        src = tables[0][1][tables[0][1]["variant"] == "source"].drop_duplicates("name").set_index("name")
        harm = [t[t["variant"] == "harmonized"].drop_duplicates("name").set_index("name") for _, t in tables]
        common = sorted(set(src.index).intersection(*[set(h.index) for h in harm]))
        frames = _even(common, max_frames)
        grid = []
        for name in frames:
            cells: list[tuple[np.ndarray, str] | None] = [(_panel(src.loc[name], panel_px),
                                                           _iou_text(src.loc[name, "ellipse_iou"]))]  # fmt: skip
            cells += [(_panel(h.loc[name], panel_px), _iou_text(h.loc[name, "ellipse_iou"])) for h in harm]
            grid.append(cells)
        if grid:
            group = str(src["group"].iloc[0])
            parts.append((grid, ["raw (source)"] + [label for label, _ in tables], [_wrap(n) for n in frames],
                          f"(b) {group} test frames: raw vs harmonized (same segmenter)"))  # fmt: skip
    if not parts:
        raise SonoshiftError(f"nothing to draw for {out_png}: no head rows of variant '{variant}' and no run frames.")
    # Figure size from the panels: each panel about panel_px pixels plus room for its caption.
    heights, widths = [], []
    for grid, _, _, _ in parts:
        ph = max(c[0].shape[0] for r in grid for c in r if c is not None)
        pw = max(c[0].shape[1] for r in grid for c in r if c is not None)
        heights.append(len(grid) * (ph / DPI + 0.55) + 0.45)
        widths.append(max(len(r) for r in grid) * (pw / DPI + 0.15) + 0.5)
    legend_h = 0.35
    width = max(*widths, 6.5)  # titles and the legend need room even when panels are small
    fig = plt.figure(figsize=(width, sum(heights) + legend_h), dpi=DPI, layout="constrained")
    subs = fig.subfigures(len(parts) + 1, 1, height_ratios=heights + [legend_h], squeeze=False)[:, 0]
    for sub, (grid, cols, rows, title) in zip(subs, parts):
        _draw(sub, grid, cols, rows, title)
    subs[-1].legend(handles=[Line2D([], [], color=MASK_COLOR, lw=2, label="segmenter head mask (edge)"),
                             Line2D([], [], color=ELLIPSE_COLOR, lw=2, label="fitted ellipse (HC = its perimeter)")],
                    loc="center", ncol=2, fontsize=8, frameon=False)  # fmt: skip
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    # Grey images, two outline colours and text fit a 256-colour palette: a third of the RGB file's size.
    img = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out_png = Path(out_png)
    with atomic_file(out_png, "wb") as f:
        img.save(f, format="PNG", optimize=True)
    return out_png
