"""What the anchor's despeckle costs (issue 12): the depth-affine anchor with no despeckle, the Gaussian one and the
bilateral one, timed side by side in the same process on the same frames (interleaved calls, median of
``--repeats``), as CPU milliseconds per frame of the calling thread on one intra-op thread (robust to other
processes' load), with the ratio to the plain map; ``--onnx`` also times each anchor exported to ONNX Runtime.

    python bench/anchor_despeckle.py [--size 256] [--batch 8] [--repeats 15] [--onnx]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sonoshift.errors import SonoshiftError, exit_on_error  # noqa: E402
from sonoshift.methods.anchor import AffineMatch  # noqa: E402


def anchors(size: int) -> dict[str, AffineMatch]:
    """The three anchors on one depth profile (row statistics of a made-up TGC drift; the cost does not depend on
    the values); the despeckles at the values the demo data's fit chose (0.4 px, 15 grey levels)."""
    rows = np.linspace(0, 1, size)
    stats = (60 + 40 * rows, 25 + 5 * rows, 50 + 20 * rows, 30 + 0 * rows)
    return {"plain": AffineMatch(*stats), "gaussian": AffineMatch(*stats, sigma=0.4),
            "bilateral": AffineMatch(*stats, range_sigma=15.0)}


def fan(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Speckle-like frames in [-1, 1] inside a fan, black outside."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = (xx - size / 2).abs() <= 4 + yy * 0.6
    x = (torch.rand(batch, 1, size, size, generator=g) ** 2) * 2 - 1
    return torch.where(inside, x, torch.full_like(x, -1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--onnx", action="store_true", help="also time each anchor in ONNX Runtime (one thread)")
    args = ap.parse_args()
    if args.size < 8 or args.batch < 1 or args.repeats < 1:
        raise SonoshiftError(f"--size must be >= 8 and --batch, --repeats >= 1, got {args.size}, {args.batch}, "
                             f"{args.repeats}.")
    torch.set_num_threads(1)
    x = fan(args.batch, args.size)
    runners = {}
    for name, a in anchors(args.size).items():
        runners[f"{name} (PyTorch)"] = lambda a=a: a(x)
        if args.onnx:
            import onnxruntime as ort

            from sonoshift.deploy.export import graph_bytes
            from sonoshift.deploy.graphs import NoiseSpec

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(graph_bytes(a, NoiseSpec(), (args.size, args.size)), opts)
            feed = {"x": x.numpy()}
            runners[f"{name} (ONNX Runtime)"] = lambda sess=sess, feed=feed: sess.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for f in runners.values():
            f()  # warm-up
        for _ in range(args.repeats):
            for k, f in runners.items():
                t = time.thread_time()
                f()
                times[k].append((time.thread_time() - t) * 1000 / args.batch)
    base = statistics.median(times["plain (PyTorch)"])
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"anchor despeckle cost, {args.batch} frames of {args.size}x{args.size}, one thread, CPU ms per frame "
          f"(median of {args.repeats}; load average {load}):")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:<26} {med:8.2f} ms/frame   x{med / base:5.2f} the plain map in PyTorch")


if __name__ == "__main__":
    exit_on_error(main)
