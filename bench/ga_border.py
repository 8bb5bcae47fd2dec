"""How the GA estimator measures heads cut by the image border: its held-out HC18 images cropped so that a given
share of the head's width lies outside the image (the side chosen per image by a seeded generator), the official
HC and pixel size unchanged.

    python bench/ga_border.py --estimator runs/ga_hc18 [--cuts 0 0.1 0.2 0.3] [--threads 1]

Prints, per cut: HC abs error mean / median / 95th percentile (mm), the no-head count, the share of contour
points dropped at the border, and the HC change against the uncropped image (mean |difference|, mm).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from sonoshift.errors import exit_on_error
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels
from sonoshift.judges.ga.estimator import load_ga_estimator, measure
from sonoshift.judges.ga.hc18_report import heldout_rows


def crop_cut(frame: np.ndarray, mask: np.ndarray, cut: float, side: int) -> np.ndarray:
    """``frame`` cropped so that ``cut`` of the head mask's extent leaves the image on ``side`` (0 left, 1 right,
    2 top, 3 bottom)."""
    ys, xs = np.nonzero(mask)
    if side < 2:
        lo, hi = xs.min(), xs.max()
        k = int(round(lo + cut * (hi - lo))) if side == 0 else int(round(hi - cut * (hi - lo))) + 1
        return frame[:, k:] if side == 0 else frame[:, :k]
    lo, hi = ys.min(), ys.max()
    k = int(round(lo + cut * (hi - lo))) if side == 2 else int(round(hi - cut * (hi - lo))) + 1
    return frame[k:] if side == 2 else frame[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"))
    ap.add_argument("--cuts", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    est = load_ga_estimator(a.estimator)
    _, val = heldout_rows(est.segmenter, a.data)
    frames = [read_gray(p) for p in val["image_path"]]
    masks = [read_labels(p) > 127 for p in val["mask_path"]]
    sides = np.random.default_rng(a.seed).integers(0, 4, len(val))
    px, hc = list(val["pixel_size_mm"]), val["hc_mm"].to_numpy()
    base = None
    print(f"{len(val)} held-out HC18 images, estimator {a.estimator} ({len(est.segmenters)} segmenter(s))")
    for cut in a.cuts:
        crops = [crop_cut(f, m, cut, s) if cut > 0 else f for f, m, s in zip(frames, masks, sides)]
        m = measure(est, crops, px)
        got = m["hc_mm"].to_numpy()
        err = np.abs(got - hc)
        base = got if base is None else base
        print(f"cut {cut:4.2f}: HC abs error mean {np.nanmean(err):5.2f} mm, median {np.nanmedian(err):5.2f}, "
              f"95th pct {np.nanpercentile(err, 95):5.2f}; no head {int(np.isnan(got).sum())}; contour at the "
              f"border {100 * m['border_fraction'].mean():4.1f} %; |HC - uncropped HC| mean "
              f"{np.nanmean(np.abs(got - base)):5.2f} mm")


if __name__ == "__main__":
    cv2.setNumThreads(1)
    exit_on_error(main)
