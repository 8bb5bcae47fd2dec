"""The worst held-out HC18 images of a GA estimator as one PNG: the reference ellipse (green, fitted to the
annotation mask) and the estimator's ellipse (red) on each image, with the HC error in mm. Where the error comes
from (a leak into a neighbouring structure, a missed stretch of skull, a head not found) shows at a glance.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from sonoshift.downstream.ellipse import fit_ellipse
from sonoshift.io.images import read_gray, write_png
from sonoshift.io.labels import read_labels

GREEN, RED, YELLOW = (40, 220, 40), (230, 40, 40), (250, 230, 60)


def _ellipse(img: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float, colour, scale: float) -> None:
    box = ((cx * scale, cy * scale), (2 * a * scale, 2 * b * scale), angle)
    cv2.ellipse(img, box, colour, 2, cv2.LINE_AA)


def worst_cases_png(table: pd.DataFrame, rows: pd.DataFrame, path: str | Path, n: int = 8, width: int = 400) -> Path:
    """Write the ``n`` largest-error rows of an ``evaluate_rows`` table (no-head images first) as a grid of
    ``width``-px panels, two per line, to ``path``. ``rows`` are the HC18 rows (filename, image_path, mask_path)."""
    by_name = rows.set_index("filename")
    t = table.assign(_key=table["hc_abs_err_mm"].fillna(math.inf)).sort_values("_key", ascending=False).head(n)
    panels = []
    for _, r in t.iterrows():
        src = by_name.loc[r["name"]]
        gray = read_gray(src["image_path"])
        s = width / gray.shape[1]
        img = cv2.cvtColor(cv2.resize(gray, (width, round(gray.shape[0] * s)), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_GRAY2RGB)
        ref = fit_ellipse(read_labels(src["mask_path"]) > 127)
        if ref is not None:
            _ellipse(img, ref.cx, ref.cy, ref.a, ref.b, ref.angle, GREEN, s)
        if r["head_found"]:
            _ellipse(img, r["cx"], r["cy"], r["a_px"], r["b_px"], r["angle"], RED, s)
            text = f"{r['name']}  {r['hc_mm'] - r['hc_true_mm']:+.1f} mm (HC {r['hc_true_mm']:.0f})"
            if math.isfinite(r.get("outline_confidence", math.nan)):  # the polar refiner's, when there is one
                text += f"  conf {r['outline_confidence']:.2f}"
        else:
            text = f"{r['name']}  no head found"
        cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, YELLOW, 1, cv2.LINE_AA)
        panels.append(img)
    h = max(p.shape[0] for p in panels) if panels else 1
    panels = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0))) for p in panels]
    if len(panels) % 2:
        panels.append(np.zeros_like(panels[0]))
    lines = [np.concatenate(panels[i : i + 2], 1) for i in range(0, len(panels), 2)]
    grid = np.concatenate(lines, 0) if lines else np.zeros((1, 1, 3), np.uint8)
    write_png(path, grid)
    return Path(path)
