"""Speed of the GA estimator's head measurement against the HC18 segmenter's current predictor, in one process.

Both paths read the same HC18 PNGs from disk (decode included) and measure one head per image with the same
segmenter weights:
- current: ``downstream.segmenter.predict`` (probabilities resized to every native frame, argmax) and
  ``downstream.ellipse.head_measurements`` on the native-size mask (what ``segment train-hc18`` validation does);
- estimator: ``judges.ga.estimator.measure`` (one batched forward at the model size, flip test-time averaging,
  sub-pixel contour ellipse at the model size mapped to native pixels).
Prints images/s of each (wall and CPU), the ratio, and how far the two HC values are apart.

    python bench/ga_speed.py --segmenter runs/hc18_head_ga [--n 100] [--threads 2]

On a machine shared with other jobs the wall time mostly measures the other jobs: compare the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from sonoshift.downstream.ellipse import head_measurements
from sonoshift.downstream.hc18 import head_mask, load_hc18_table
from sonoshift.io.images import read_gray
from sonoshift.downstream.segmenter import load_segmenter, predict
from sonoshift.judges.ga.estimator import GaEstimator, head_probabilities, measure
from sonoshift.judges.ga.head_fit import fit_head


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmenter", required=True, help="HC18 segmenter or GA estimator folder")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-tta", action="store_true", help="one forward per image (no flip averaging)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    rows = load_hc18_table(a.data).iloc[: a.n]
    seg = load_segmenter(a.segmenter)
    est = GaEstimator(seg, float(seg.info.get("ga_estimator", {}).get("offset_px", 0.0)), tta=not a.no_tta)
    paths, px = list(rows["image_path"]), list(rows["pixel_size_mm"])

    def current():
        frames = [read_gray(p) for p in paths]
        return [head_measurements(head_mask(seg, m), s)["hc_mm"] for m, s in zip(predict(seg, frames, 16), px)]

    def new():
        frames = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths]
        return measure(est, frames, px, a.batch)["hc_mm"].to_numpy()

    new()  # warm-up (allocator, first-call overheads) for both paths alike
    hc_old, w_old, c_old = _timed(current)
    hc_new, w_new, c_new = _timed(new)
    n = len(paths)
    print(f"{n} HC18 images, {a.threads} threads, decode included")
    print(f"current predictor : {n / w_old:7.1f} images/s wall, {n / c_old:7.1f} images/s per CPU-second")
    print(f"GA estimator      : {n / w_new:7.1f} images/s wall, {n / c_new:7.1f} images/s per CPU-second")
    print(f"ratio (estimator / current): wall {w_old / w_new:.1f}x, CPU {c_old / c_new:.1f}x")
    diff = np.abs(np.array(hc_old) - hc_new)
    print(f"HC difference between the two paths: median {np.nanmedian(diff):.2f} mm")
    # where the estimator's time goes (CPU seconds per image)
    frames, t_dec, _ = _timed(lambda: [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths])
    probs, t_net, _ = _timed(lambda: head_probabilities(est, frames, a.batch))
    _, t_fit, _ = _timed(lambda: [fit_head(p, f.shape) for p, f in zip(probs, frames)])
    print(f"estimator per image (wall ms): decode {1e3 * t_dec / n:.1f}, network {1e3 * t_net / n:.1f} "
          f"(tta={est.tta}), ellipse fit {1e3 * t_fit / n:.1f}")


if __name__ == "__main__":
    main()
