"""Violin plots per metric (the paper's Figure 3): one violin per run, min / mean / max marked, mean written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sonoshift.atomic import atomic_file  # noqa: E402
from sonoshift.report.load import RunResult  # noqa: E402
from sonoshift.report.table import MODE_TITLE, arrow, display, fmt  # noqa: E402

COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


LABEL_WIDTH = 18  # characters per tick-label line: the labels of neighbouring violins (1.5 inches apart) never meet


def _wrap(label: str, width: int = LABEL_WIDTH) -> str:
    """A run label as tick lines: its description in parentheses on new lines, every line at most ``width``
    characters (longer words are kept whole)."""
    parts = label.replace(" (", "\n(").split("\n")
    return "\n".join(textwrap.fill(part, width, break_long_words=False) for part in parts)


def violin(runs: list[RunResult], mode: str, metric: str, path: Path) -> Path | None:
    """Write one violin figure (PNG) of ``metric`` under reference ``mode``; None when no run has finite values.

    Infinite values (PSNR of identical frames) cannot be drawn; their count is written under the violin.
    """
    data, labels, n_inf = [], [], []
    for r in runs:
        sub = r.rows[r.rows["reference"] == mode]
        if sub.empty or metric not in sub.columns:
            continue
        v = sub[metric].to_numpy(dtype=float)
        v = v[~np.isnan(v)]
        data.append(v[np.isfinite(v)])
        n_inf.append(int((~np.isfinite(v)).sum()))
        labels.append(r.label)
    if not any(d.size for d in data):
        return None
    fig, ax = plt.subplots(figsize=(1.2 + 1.5 * len(data), 3.6), dpi=110)
    pos = np.arange(1, len(data) + 1)
    allv = np.concatenate([d for d in data if d.size])
    span = float(allv.max() - allv.min()) or max(abs(float(allv.max())), 1.0) * 0.05
    for i, (d, p) in enumerate(zip(data, pos)):
        color = COLORS[i % len(COLORS)]
        if d.size >= 2 and np.ptp(d) > 0:
            parts = ax.violinplot([d], positions=[p], widths=0.75, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_edgecolor("black")
                body.set_linewidth(0.6)
                body.set_alpha(0.55)
        if d.size:
            lo, hi, mean = float(d.min()), float(d.max()), float(d.mean())
            ax.vlines(p, lo, hi, color="black", linewidth=0.8)
            ax.hlines([lo, hi], p - 0.12, p + 0.12, color="black", linewidth=1.0)
            ax.scatter([p], [mean], marker="D", s=28, color="white", edgecolor="black", zorder=3)
            ax.text(p + 0.08, hi + 0.04 * span, f"mean {fmt(metric, mean)}", ha="center", va="bottom", fontsize=8)
        if n_inf[i]:
            ax.text(p, float(allv.min()) - 0.12 * span, f"{n_inf[i]} frames: ∞", ha="center", va="top", fontsize=7,
                    color="dimgray")  # fmt: skip
    ax.set_xticks(pos, [_wrap(lbl) for lbl in labels], fontsize=8)
    ax.set_xlim(0.4, len(data) + 0.6)
    ax.set_ylim(float(allv.min()) - 0.2 * span, float(allv.max()) + 0.18 * span)
    better = "higher is better" if arrow(metric) == "↑" else "lower is better"
    ax.set_title(f"{display(metric)} {arrow(metric)} ({better})\n{mode}: {MODE_TITLE.get(mode, mode)}", fontsize=9)
    ax.set_xlabel("◇ mean   bars: min and max", fontsize=7, color="dimgray")
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path


def violins(runs: list[RunResult], modes: list[str], metrics: list[str], out_dir: Path) -> dict[str, list[Path]]:
    """Write violins/<mode>_<metric>.png for every mode and metric -> {mode: [paths]}."""
    written: dict[str, list[Path]] = {}
    for mode in modes:
        for m in metrics:
            p = violin(runs, mode, m, out_dir / "violins" / f"{mode}_{m}.png")
            if p is not None:
                written.setdefault(mode, []).append(p)
    return written
