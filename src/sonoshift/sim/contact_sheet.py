"""Contact sheet: the same sample frames seen by every profile, each with its anatomy label overlay."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sonoshift.io.images import write_png
from sonoshift.io.video import read_video
from sonoshift.sim.profiles import Profile
from sonoshift.sim.tissues import LABEL_NAMES

# One colour (BGR) per class id; class 0 (outside the fan) stays uncoloured.
_PALETTE = np.array(
    [[0, 0, 0], [90, 90, 160], [60, 120, 200], [200, 90, 20], [40, 170, 230], [120, 200, 120], [255, 255, 255],
     [200, 140, 200], [255, 200, 0], [60, 60, 230], [255, 255, 120], [255, 120, 60], [30, 110, 170],
     [230, 30, 230], [240, 240, 160], [40, 40, 200], [170, 0, 120], [180, 210, 255], [0, 255, 255],
     [160, 255, 255], [60, 90, 120]],
    dtype=np.uint8,
)
assert len(_PALETTE) >= len(LABEL_NAMES)


def label_overlay(gray: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """BGR image: ``gray`` (H, W) uint8 with class colours of ``labels`` (H, W) blended in at ``alpha``."""
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.float32)
    colour = _PALETTE[np.minimum(labels, len(_PALETTE) - 1)].astype(np.float32)
    m = (labels > 0)[..., None]
    out = np.where(m, (1 - alpha) * bgr + alpha * colour, bgr)
    return np.clip(out, 0, 255).astype(np.uint8)


def pick_samples(records: list[dict], n: int = 6) -> list[tuple[str, int, str]]:
    """Up to ``n`` (video_id, frame, plane) picks of the first profile: one per plane first, then spread out."""
    first = records[0]["profile"]
    rows = [(r["video_id"], k, plane) for r in records if r["profile"] == first for k, plane in enumerate(r["planes"])]
    picks: list[tuple[str, int, str]] = []
    for wanted in ("head", "abdomen", "femur"):
        hit = [row for row in rows if row[2] == wanted]
        if hit:
            picks.append(hit[len(hit) // 2])
    for idx in np.linspace(0, len(rows) - 1, num=2 * n).astype(int):
        if len(picks) >= n:
            break
        if rows[idx] not in picks and rows[idx][2] == "other":
            picks.append(rows[idx])
    return picks[:n]


def write_contact_sheet(root: Path, records: list[dict], profiles: list[Profile], path: Path) -> np.ndarray:
    """Write a PNG grid to ``path``: per profile a row of frames (with overlay) and a row of label overlays.

    ``records`` are simulate's per-item records (paths relative to ``root``). Returns the BGR sheet.
    """
    picks = pick_samples(records)
    by_key = {(r["video_id"], r["profile"]): r for r in records}
    rows = []
    for p in profiles:
        top, bottom = [], []
        for video_id, k, plane in picks:
            r = by_key[(video_id, p.name)]
            frame = read_video(root / r["paths"]["video"])[0][k]
            labels = np.load(root / r["paths"]["label_map"], mmap_mode="r")[k]
            tile = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            # Caption in the empty bottom-right corner (the scanner's own text is top and bottom-left).
            size = frame.shape[0]
            cv2.putText(tile, f"{p.name}: {plane}", (int(0.5 * size), size - 5), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35 * size / 256, (0, 255, 255), 1, cv2.LINE_AA)
            top.append(tile)
            bottom.append(label_overlay(frame, np.asarray(labels)))
        rows += [np.hstack(top), np.hstack(bottom)]
    sheet = np.vstack(rows)
    write_png(path, sheet, bgr=True)
    return sheet
