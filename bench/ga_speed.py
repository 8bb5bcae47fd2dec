"""Speed of the GA estimator's head measurement against the HC18 segmenter's current predictor, in one process.

Both paths read the same HC18 PNGs from disk (decode included) and measure one head per image with the same
segmenter weights:
- current: ``downstream.segmenter.predict`` (probabilities resized to every native frame, argmax) and
  ``downstream.ellipse.head_measurements`` on the native-size mask (what ``segment train-hc18`` validation does);
- estimator: ``judges.ga.estimator.measure_files`` (``--workers`` threads decode and resize the next batch while
  the network runs on this one; batched forward at the model size, flip test-time averaging unless --no-tta,
  sub-pixel contour ellipse at the model size mapped to native pixels, trimmed refit).
- estimator (onnx): the same with every member network in ONNX Runtime (``judges.ga.onnx_net``).
- estimator (onnx, lanes): the same in ``--lanes`` threads that each take whole batches through every stage, its
  networks on ``--threads`` / ``--lanes`` intra-op threads each (``measure_files(lanes=)``, ``ga predict --lanes``),
  in batches of ``--lane-batch`` (the estimator's ``LANE_BATCH``), alternated with the same lanes at ``--batch``.
  Its intra-op threads do not spin (``spinning=False``); the same with ORT's default busy-waiting threads is
  printed beside it, and the same without the exact export rewrites (``deploy/rewrite.py``: PReLU as LeakyReLU).
Prints images/s of each (wall and per CPU-second), the ratios, how far the HC values are apart, and the load
average before and after (other jobs on the machine distort the wall numbers).

    python bench/ga_speed.py --segmenter runs/hc18_head_ga [--n 200] [--threads 2] [--workers 2] [--no-tta]
        [--lanes 2] [--lane-batch 8] [--repeats 3] [--first-tta 0|1]
        [--refine-tta 0|1] [--polar-tta 0|1] [--refiner REFINER_FOLDER ...] [--rescue-iou 0.9]

An estimator with a polar refiner (judges/ga/polar_refiner.py) is also timed without it, side by side.

On a machine shared with other jobs the wall time mostly measures the other jobs: compare the ratio. Images per
CPU-second (all threads' CPU time counted) does not depend on the load; on two idle cores the wall rate can reach
about twice it when both cores are busy with useful work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from sonoshift.downstream.ellipse import head_measurements
from sonoshift.downstream.hc18 import head_mask, load_hc18_table
from sonoshift.errors import exit_on_error
from sonoshift.io.images import read_gray
from sonoshift.downstream.segmenter import load_segmenter, predict
from sonoshift.judges.ga.estimator import (
    LANE_BATCH,
    GaEstimator,
    fits_for,
    head_probabilities,
    load_ga_estimator,
    measure_files,
    refine_fits,
)
from sonoshift.judges.ga.crop_search import crop_fits
from sonoshift.judges.ga.head_fit import fit_head
from sonoshift.judges.ga.onnx_net import with_runtime


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def _medians(runs) -> tuple[float, float]:
    """Median wall and CPU seconds of ``_timed`` results."""
    return float(np.median([r[1] for r in runs])), float(np.median([r[2] for r in runs]))


def _rates(n: int, runs) -> str:
    return "/".join(f"{n / r[1]:.1f}" for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segmenter", required=True, help="HC18 segmenter or GA estimator folder")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="decode threads of the estimator path")
    ap.add_argument("--lanes", type=int, default=2, help="threads measuring whole batches, side by side with one")
    ap.add_argument("--lane-batch", type=int, default=None,
                    help="batch size in the lanes (default: the estimator's LANE_BATCH), timed alternately with "
                         "the lanes at --batch")
    ap.add_argument("--repeats", type=int, default=3, help="alternated runs of the one-lane and lanes rows")
    ap.add_argument("--no-tta", action="store_true", help="one forward per image (no flip averaging)")
    ap.add_argument("--first-tta", type=int, choices=(0, 1), default=None,
                    help="first-stage flip averaging (default: the estimator's own setting)")
    ap.add_argument("--refine-tta", type=int, choices=(0, 1), default=None,
                    help="crop refiners' flip averaging (default: the estimator's own setting)")
    ap.add_argument("--polar-tta", type=int, choices=(0, 1), default=None,
                    help="polar refiner's flip averaging (default: the estimator's own setting)")
    ap.add_argument("--rescue-iou", type=float, default=None,
                    help="crop search below this refiner-map ellipse IoU (default: the estimator's own; 0: off)")
    ap.add_argument("--refiner", action="append", default=[],
                    help="crop refiner folder(s) to use instead of the estimator's own (their margin too)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    rows = load_hc18_table(a.data).iloc[: a.n]
    seg = load_segmenter(a.segmenter)
    if "ga_estimator" in seg.info:  # a built estimator (maybe an ensemble): its own members and calibration
        est = load_ga_estimator(a.segmenter)
    else:
        est = GaEstimator(seg, 0.0)
    if a.refiner:
        refs = tuple(load_segmenter(r) for r in a.refiner)
        est = dataclasses.replace(est, refiners=refs, crop_margin=float(refs[0].info["head_crop"]["margin"]))
    first_tta = est.tta if a.first_tta is None else bool(a.first_tta)
    refine_tta = (est.tta if est.refine_tta is None else est.refine_tta) if a.refine_tta is None else bool(a.refine_tta)
    est = dataclasses.replace(est, tta=first_tta and not a.no_tta, refine_tta=refine_tta and not a.no_tta)
    if a.rescue_iou is not None:
        est = dataclasses.replace(est, rescue_iou=a.rescue_iou)
    if a.polar_tta is not None and est.polar:
        est = dataclasses.replace(est, polar=(dataclasses.replace(est.polar[0], tta=bool(a.polar_tta)),))
    paths, px = list(rows["image_path"]), list(rows["pixel_size_mm"])

    def current():
        frames = [read_gray(p) for p in paths]
        return [head_measurements(head_mask(seg, m), s)["hc_mm"] for m, s in zip(predict(seg, frames, 16), px)]

    est_ort = with_runtime(est, "onnx", threads=a.threads)
    est_spin = with_runtime(est, "onnx", threads=a.threads, spinning=True)  # ORT's default busy-waiting threads
    est_plain = with_runtime(est, "onnx", threads=a.threads, rewrite=False)  # PReLU exported as is (deploy/rewrite.py)

    est_lanes = with_runtime(est, "onnx", threads=max(1, a.threads // a.lanes))

    lane_batch = a.lane_batch or LANE_BATCH

    def new(e=est, lanes=1, batch=a.batch):
        return measure_files(e, paths, px, batch, a.workers, lanes=lanes)["hc_mm"].to_numpy()

    load0 = os.getloadavg()
    # warm-up (allocator, first-call overheads) for every path alike
    new(), new(est_ort), new(est_spin), new(est_plain), new(est_lanes, a.lanes, lane_batch)
    hc_old, w_old, c_old = _timed(current)
    hc_new, w_new, c_new = _timed(new)
    one, lanes, lanes_b = [], [], []  # alternated repeats (median): they see the same machine
    # optional stages present: the same lanes without each, alternated too (its words, the field that drops it)
    optional = [(w, f) for w, f in (("the scale check", "scale_check"), ("the second opinion", "second"),
                                    ("the tie-breaker", "third")) if getattr(est, f) is not None]
    without = {w: [] for w, _ in optional}
    for _ in range(a.repeats):
        one.append(_timed(lambda: new(est_ort)))
        lanes.append(_timed(lambda: new(est_lanes, a.lanes, lane_batch)))
        if lane_batch != a.batch:
            lanes_b.append(_timed(lambda: new(est_lanes, a.lanes)))
        for w, f in optional:
            without[w].append(_timed(lambda: new(dataclasses.replace(est_lanes, **{f: None}), a.lanes, lane_batch)))
    hc_ort, hc_lanes = one[0][0], lanes[0][0]
    (w_ort, c_ort), (w_lanes, c_lanes) = _medians(one), _medians(lanes)
    _, w_spin, c_spin = _timed(lambda: new(est_spin))
    hc_plain, w_plain, c_plain = _timed(lambda: new(est_plain))
    if est.polar:  # the same ORT estimator without its polar stage, side by side
        _, w_nopol, c_nopol = _timed(lambda: new(dataclasses.replace(est_ort, polar=(), scale_check=None,
                                                                     second=None)))
    if est.border:  # ... and without its border estimator (heads at the image border), side by side
        _, w_nob, c_nob = _timed(lambda: new(dataclasses.replace(est_ort, border=None)))
    n = len(paths)
    print(f"{n} HC18 images, {a.threads} torch/ORT threads, {a.workers} decode threads, decode included, "
          f"model sizes {list(est.input_sizes)} ({len(est.segmenters)} segmenter(s)), tta={est.tta}, "
          f"refiners {[r.image_size for r in est.refiners]} px (tta={est.refine_tta}, rescue below IoU "
          f"{est.rescue_iou} at scales {list(est.rescue_scales)})")
    print(f"load average (1 min) {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    print(f"current predictor : {n / w_old:7.1f} images/s wall, {n / c_old:7.1f} images/s per CPU-second")
    print(f"GA estimator      : {n / w_new:7.1f} images/s wall, {n / c_new:7.1f} images/s per CPU-second")
    print(f"GA estimator, ORT : {n / w_ort:7.1f} images/s wall, {n / c_ort:7.1f} images/s per CPU-second "
          f"(median of {a.repeats}; runs {_rates(n, one)})")
    per_lane = max(1, a.threads // a.lanes)
    print(f"GA estimator, ORT, {a.lanes} lanes of {per_lane} thread(s), batches of {lane_batch}: "
          f"{n / w_lanes:7.1f} images/s wall, {n / c_lanes:7.1f} per CPU-second (median of {a.repeats}, alternated "
          f"with the row above; runs {_rates(n, lanes)}; x{w_ort / w_lanes:.2f} wall against one lane; HC max "
          f"difference {np.nanmax(np.abs(hc_lanes - hc_ort)):.1e} mm)")
    if lanes_b:
        w_b, c_b = _medians(lanes_b)
        print(f"  same lanes, batches of {a.batch}: {n / w_b:7.1f} images/s wall, {n / c_b:7.1f} per CPU-second "
              f"(alternated; runs {_rates(n, lanes_b)}; batches of {lane_batch}: x{w_b / w_lanes:.2f} wall; HC max "
              f"difference {np.nanmax(np.abs(lanes_b[0][0] - hc_lanes)):.1e} mm)")
    for w, runs in without.items():
        w_u, c_u = _medians(runs)
        moved = int(np.sum(np.abs(runs[0][0] - hc_lanes) > 1e-6))
        print(f"  same lanes, without {w}: {n / w_u:7.1f} images/s wall, {n / c_u:7.1f} per CPU-second "
              f"(alternated; runs {_rates(n, runs)}; {w} costs x{w_u / w_lanes:.2f} wall and changed the HC "
              f"of {moved} of {n} heads)")
    print(f"  same, ORT threads spinning (ORT's default): {n / w_spin:7.1f} images/s wall, {n / c_spin:7.1f} per "
          f"CPU-second (no spinning: x{w_spin / w_ort:.2f} wall)")
    print(f"  same, without the export rewrites (PReLU kept): {n / w_plain:7.1f} images/s wall, {n / c_plain:7.1f} "
          f"per CPU-second (the rewrites: x{w_plain / w_ort:.2f} wall, HC max difference "
          f"{np.nanmax(np.abs(hc_plain - hc_ort)):.1e} mm)")
    if est.polar:
        p = est.polar[0]
        print(f"  same, without the polar stage ({len(p.networks)} network(s), {p.iterations} round(s), tta={p.tta}): "
              f"{n / w_nopol:7.1f} images/s "
              f"wall, {n / c_nopol:7.1f} per CPU-second (the polar stage costs x{w_ort / w_nopol:.2f} wall)")
    if est.border:
        first = dataclasses.replace(est_ort, refiners=(), polar=(), border=None, scale_check=None, second=None)
        touching = sum(f.found and f.border_fraction > est.border_threshold
                       for f in fits_for(first, [read_gray(p) for p in paths], a.batch))
        print(f"  same, without the border estimator ({touching} of {n} heads at the image border go to it): "
              f"{n / w_nob:7.1f} images/s wall, {n / c_nob:7.1f} per CPU-second "
              f"(it costs x{w_ort / w_nob:.2f} wall)")
    print(f"ratio (estimator / current): wall {w_old / w_new:.2f}x, CPU {c_old / c_new:.2f}x")
    print(f"ratio (ORT / torch estimator): wall {w_new / w_ort:.2f}x, CPU {c_new / c_ort:.2f}x")
    diff = np.abs(np.array(hc_old) - hc_new)
    print(f"HC difference between the two paths: median {np.nanmedian(diff):.2f} mm; ORT vs torch estimator: "
          f"max {np.nanmax(np.abs(hc_ort - hc_new)):.4f} mm")
    # where the estimator's time goes (CPU seconds per image)
    frames, _, c_dec = _timed(lambda: [read_gray(p) for p in paths])
    nets = {"torch": [], "onnx": []}
    for _ in range(3):  # alternating repeats, median: the two runtimes see the same load
        for name, e in (("torch", est), ("onnx", est_ort)):
            probs, _, c = _timed(lambda e=e: head_probabilities(e, frames, a.batch))
            nets[name].append(c)
    c_net, c_ort = float(np.median(nets["torch"])), float(np.median(nets["onnx"]))
    fits, _, c_fit = _timed(lambda: [fit_head(p, f.shape) for p, f in zip(probs, frames)])
    refine = ""
    if est.refiners:  # the crop refiners' second look: crops, their networks (ORT) and the second fit
        _, _, c_ref = _timed(lambda: refine_fits(est_ort, frames, fits, a.batch))
        refine = f", crop refiner (ORT, {len(est.refiners)} net(s)) {1e3 * c_ref / n:.1f}"
        if est.rescue_iou > 0:  # the crop search's share: the same refinement without it, side by side
            plain = dataclasses.replace(est_ort, rescue_iou=0.0)
            _, _, c_plain = _timed(lambda: refine_fits(plain, frames, fits, a.batch))
            second = dataclasses.replace(est_ort, segmenter=est_ort.refiners[0], members=est_ort.refiners[1:],
                                         refiners=(), tta=est_ort.refine_tta)
            ious = crop_fits(second, [f for f, h in zip(frames, fits) if h.found],
                             [h.ellipse for h in fits if h.found], est.crop_margin, a.batch)[2]
            searched = sum(i < est.rescue_iou for i in ious)
            refine += (f" (without the crop search {1e3 * c_plain / n:.1f}: {c_ref / c_plain:.2f}x; "
                       f"searched {searched} of {n} images)")
    print(f"estimator per image (CPU ms, one after the other): decode {1e3 * c_dec / n:.1f}, resize + network "
          f"{1e3 * c_net / n:.1f} torch / {1e3 * c_ort / n:.1f} ORT ({c_net / c_ort:.2f}x; median of 3, tta={est.tta}), "
          f"ellipse fit {1e3 * c_fit / n:.1f}{refine}")


if __name__ == "__main__":
    exit_on_error(main)
