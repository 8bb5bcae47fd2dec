"""CPU cost per frame of students and teachers, eager PyTorch vs ONNX Runtime, robust to other processes' load.

Wall-clock frames/s on the shared 2-core machine swing with the other processes; the CPU time the calling thread
spends in one call does not (much). With ONE intra-op thread ONNX Runtime and PyTorch both run in the calling
thread, so ``time.thread_time()`` around a call is the model's CPU cost. Batch 1, interleaved calls, at ``--size``:
the plain mobile U-Net student, the histogram-anchored one (random weights, and a trained ``--student`` run, also in
eager PyTorch), the anchor alone (``HistogramMatchNet``), and each ``--teacher`` run (DDGAN / cascade: the sampler
unrolled over its steps) in eager PyTorch and in ONNX Runtime. 1000 / (CPU ms) is the frame rate one idle core
would sustain; the ORT / eager ratios are those of the same network on one thread. (At 2 threads on an overloaded
machine eager PyTorch's OpenMP threads stall and wall-clock ratios blow up: `bench/realtime.py` at load ~10 printed
27x for the DDGAN teacher; on one thread that artefact is gone.)

    python bench/cpu_cost.py --student runs/student --data runs/data --frames 40
    python bench/cpu_cost.py --size 64 --teacher runs/demo/models/ddgan --teacher runs/demo/models/cascade
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from realtime import anchor_of, onnx_of, random_translator
from sonoshift.deploy.export import graph_bytes
from sonoshift.deploy.graphs import NoiseSpec
from sonoshift.deploy.runtime import session_options
from sonoshift.errors import exit_on_error
from sonoshift.methods import load_translator
from sonoshift.methods.student import StudentModel, build_student


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--student", default=None, help="a trained student run (added as a row)")
    ap.add_argument("--data", default=None, help="prepared dataset: the anchor's histogram (default: random frames)")
    ap.add_argument("--teacher", action="append", default=[], help="a trained teacher run (repeatable): eager + ORT")
    args = ap.parse_args()
    torch.set_num_threads(1)
    size = args.size
    if args.data:
        from sonoshift.data.cache import load_cache

        frames = np.asarray(load_cache(args.data, "train", "handheld"))[:32]
    else:
        frames = (torch.rand(8, 64, 64, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8).numpy()
    hm = anchor_of(frames, size)
    variants: dict[str, Any] = {
        "plain mobile U-Net 16/4": onnx_of(random_translator(build_student(StudentModel()), size, True), size, 1),
        "anchored mobile U-Net 16/4": onnx_of(random_translator(
            build_student(StudentModel(anchor="histogram_match"), hm), size, True), size, 1),
    }
    ratios = []
    if args.student:
        st = load_translator(args.student, device="cpu")
        variants[f"student {args.student} eager"] = st
        variants[f"student {args.student} ORT"] = onnx_of(st, size, 1)
        ratios.append(f"student {args.student}")
    for run in args.teacher:
        tr = load_translator(run, device="cpu")
        variants[f"teacher {run} eager"] = tr
        variants[f"teacher {run} ORT"] = onnx_of(tr, size, 1)
        ratios.append(f"teacher {run}")
    s = ort.InferenceSession(graph_bytes(hm.module().eval(), NoiseSpec(), (size, size)), session_options(1),
                             providers=["CPUExecutionProvider"])
    variants["anchor alone (HistogramMatchNet)"] = lambda x: s.run(None, {"x": x.numpy()})
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(1, 1, size, size, generator=g) * 2 - 1 for _ in range(args.frames)]
    with torch.inference_mode():
        for fn in variants.values():
            for _ in range(2):
                fn(xs[0])
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    load = os.getloadavg()[0]
    with torch.inference_mode():
        for x in xs:
            for k, fn in variants.items():
                c, w = time.thread_time(), time.perf_counter()
                fn(x)
                cpu[k].append(time.thread_time() - c)
                wall[k].append(time.perf_counter() - w)
    print(f"ONNX Runtime, 1 intra-op thread, {size}x{size}, batch 1, {args.frames} frames; load average {load:.1f} "
          f"-> {os.getloadavg()[0]:.1f}")
    print("| variant | CPU ms/frame (mean) | CPU ms p99 | 1000 / CPU ms | wall ms (mean, load-dependent) |")
    print("|---|---|---|---|---|")
    for k in variants:
        m = 1e3 * statistics.mean(cpu[k])
        print(f"| {k} | {m:.1f} | {1e3 * float(np.percentile(cpu[k], 99)):.1f} | {1e3 / m:.1f} | "
              f"{1e3 * statistics.mean(wall[k]):.1f} |")
    base = statistics.mean(cpu["plain mobile U-Net 16/4"])
    print(f"\nanchored / plain CPU cost: {statistics.mean(cpu['anchored mobile U-Net 16/4']) / base:.2f}x")
    for name in ratios:
        r = statistics.mean(cpu[f"{name} eager"]) / statistics.mean(cpu[f"{name} ORT"])
        print(f"{name}: ORT / eager (same network, 1 thread, CPU time) {r:.2f}x")


if __name__ == "__main__":
    exit_on_error(main)
