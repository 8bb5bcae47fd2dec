"""Benchmark: frames per second of decode + field-of-view crop + resize, sonoshift against a naive loop.

Two inputs: a generated 640x480 MP4 (a fan sector with changing speckle and a burned-in static text overlay)
and the FETAL_PLANES_DB PNGs in the shared data. Both pipelines run side by side in the same process.

- sonoshift: the per-item hot loop of ``prepare``: ``read_stack`` (PyAV threaded decode, luma plane read
  directly and range-expanded by a table) -> ``find_fov`` once per video -> ``crop_resize_stack`` (mask +
  OpenCV INTER_AREA straight into the output + re-mask, frame by frame).
- baseline: each frame decoded to a PIL image and converted to gray, its own crop (``find_fov`` on that
  frame alone), then ``skimage.transform.resize`` with anti-aliasing.

Columns: wall-clock frames/s (best of ``--repeat`` runs for sonoshift, one run for the slow baseline) and
frames per CPU-second of this process over all its threads (best run). The machine may be shared, so the
load average is printed too: under load the wall number understates what 2 free cores give, while frames
per CPU-second does not depend on other processes (the wall rate on N free cores lies between it and N
times it, depending on how well the work spreads over the cores).

Usage: python bench/prepare.py [--frames 300] [--size 256] [--data-root ../shared/data] [--pngs 143] [--repeat 3]
Target: >= 300 frames/s for video on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sonoshift.errors import exit_on_error


def make_video_file(path: Path, frames: int, seed: int = 0) -> None:
    """Write a 640x480 H.264 MP4 with a fan sector of changing speckle and a static burned-in overlay."""
    import av

    h, w = 480, 640
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy + 40, xx - w / 2)
    ang = np.degrees(np.arctan2(xx - w / 2, yy + 40))
    sector = (r > 80) & (r < 470) & (np.abs(ang) < 35)
    base = cv2.GaussianBlur(rng.uniform(40, 180, (h, w)).astype(np.float32), (0, 0), 6)
    overlay = np.zeros((h, w), np.uint8)
    cv2.putText(overlay, "ID 1234567  2026-11-22 08:00", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1)
    cv2.putText(overlay, "VENDOR", (w - 110, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast"}
        for _ in range(frames):
            f = np.where(sector, np.clip(base * rng.rayleigh(0.8, (h, w)), 0, 255), 0).astype(np.uint8)
            f = np.maximum(f, overlay)
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="gray")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def sonoshift_items(paths: list[Path], size: int) -> int:
    """The prepare path for each item; returns frames processed."""
    from sonoshift.data.crop import find_fov
    from sonoshift.data.readers import read_stack
    from sonoshift.data.resize import ResizeConfig, crop_resize_stack

    cfg = ResizeConfig(size=size)
    n = 0
    for p in paths:
        frames = read_stack(p).frames
        crop = find_fov(frames)
        out, _ = crop_resize_stack(frames, crop, cfg)
        n += out.shape[0]
    return n


def stage_costs(path: Path, size: int, repeat: int) -> dict[str, float]:
    """CPU milliseconds per frame of each stage of ``sonoshift_items`` on one video (best of ``repeat``)."""
    from sonoshift.data.crop import find_fov
    from sonoshift.data.readers import read_stack
    from sonoshift.data.resize import ResizeConfig, crop_resize_stack

    best: dict[str, float] = {}
    for _ in range(max(1, repeat)):
        c0 = time.process_time()
        frames = read_stack(path).frames
        c1 = time.process_time()
        crop = find_fov(frames)
        c2 = time.process_time()
        crop_resize_stack(frames, crop, ResizeConfig(size=size))
        c3 = time.process_time()
        for name, sec in (("decode", c1 - c0), ("find_fov", c2 - c1), ("crop+resize", c3 - c2)):
            best[name] = min(best.get(name, sec), sec)
    return {k: 1000 * v / frames.shape[0] for k, v in best.items()}


def _baseline_frame(gray: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    from sonoshift.data.crop import apply_crop, find_fov

    crop = find_fov(gray[None])
    cropped = apply_crop(gray, crop)
    return (resize(cropped, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def baseline_items(paths: list[Path], size: int) -> int:
    """Naive per-frame loop: PIL decode, per-frame crop, skimage resize; returns frames processed."""
    import av
    from PIL import Image

    n = 0
    for p in paths:
        if p.suffix.lower() == ".mp4":
            with av.open(str(p)) as c:
                for frame in c.decode(video=0):
                    gray = np.asarray(frame.to_image().convert("L"))
                    _baseline_frame(gray, size)
                    n += 1
        else:
            gray = np.asarray(Image.open(p).convert("L"))
            _baseline_frame(gray, size)
            n += 1
    return n


def timed(fn, *args, repeat: int = 1) -> tuple[int, float, float]:
    """(frames, best wall seconds, best CPU seconds of this process over all its threads) over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        t, c = time.perf_counter(), time.process_time()
        n = fn(*args)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return n, min(walls), min(cpus)


def report(name: str, ours: tuple[int, float, float], base: tuple[int, float, float]) -> None:
    """Wall-clock frames/s, and frames per CPU-second (robust when other processes share the cores)."""
    fo, fb = ours[0] / ours[1], base[0] / base[1]
    co, cb = ours[0] / ours[2], base[0] / base[2]
    print(f"{name:<28}{ours[0]:>8}{fo:>14.1f}{fb:>14.1f}{fo / fb:>9.1f}x{co:>14.1f}{cb:>14.1f}{co / cb:>9.1f}x")


def load() -> str:
    """The 1-minute load average and the number of usable cores, as text."""
    try:
        avg = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        avg = "?"
    return f"load average {avg} on {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames in the generated 640x480 MP4")
    ap.add_argument("--size", type=int, default=256, help="output size in pixels")
    ap.add_argument("--data-root", type=Path, default=Path("..") / "shared" / "data")
    ap.add_argument("--pngs", type=int, default=143, help="how many FETAL_PLANES_DB PNGs (0 = skip)")
    ap.add_argument("--repeat", type=int, default=3, help="sonoshift runs per input (best one is reported)")
    args = ap.parse_args()
    import torch

    print(f"torch threads {torch.get_num_threads()}, OpenCV threads {cv2.getNumThreads()}, {load()}")
    print(
        f"{'input':<28}{'frames':>8}{'sonoshift f/s':>14}{'baseline f/s':>14}{'ratio':>10}"
        f"{'ours f/cpu-s':>14}{'base f/cpu-s':>14}{'ratio':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        make_video_file(video, args.frames)
        sonoshift_items([video], args.size)  # warm-up (imports, codec init)
        ours = timed(sonoshift_items, [video], args.size, repeat=args.repeat)
        base = timed(baseline_items, [video], args.size)
        report(f"MP4 640x480 x{args.frames}", ours, base)
        costs = stage_costs(video, args.size, args.repeat)
        print("  sonoshift CPU ms/frame: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    images = sorted((args.data_root / "fetal_planes_db" / "images").glob("*.png"))[: args.pngs]
    if images:
        ours = timed(sonoshift_items, images, args.size, repeat=args.repeat)
        base = timed(baseline_items, images, args.size)
        report(f"FETAL_PLANES_DB PNG x{len(images)}", ours, base)
    elif args.pngs:
        print(f"FETAL_PLANES_DB images not found under {args.data_root} (skipped)")
    print(f"after the runs: {load()}")


if __name__ == "__main__":
    exit_on_error(main)
