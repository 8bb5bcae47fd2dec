"""The residual-block 3x3 conv of the CycleGAN generator (ngf 64: 256 channels): Winograd (models/fast_conv.py)
against nn.Conv2d, forward + backward, alternating call by call in one process; the result is the median of the
per-pair time ratios (robust to load from other processes), printed with the 1-min load average.

    python bench/winograd_layer.py --threads 2 --reps 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from sonoshift.models.fast_conv import Conv3x3


def one(conv, x) -> float:
    s = time.perf_counter()
    y = conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
    y.square().mean().backward()
    return time.perf_counter() - s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads {args.threads}; load average at start {os.getloadavg()[0]:.2f}")
    for batch, side in ((4, 32), (1, 64), (1, 32)):  # 128x128 batch 4, 256x256 batch 1, 128x128 batch 1
        fast = Conv3x3(256, 256, fast=True)
        plain = Conv3x3(256, 256, fast=False)
        plain.load_state_dict(fast.state_dict())
        x = torch.randn(batch, 256, side, side, requires_grad=True)
        assert fast.uses_fast_path(F.pad(x, (1, 1, 1, 1))) and not plain.uses_fast_path(x)
        ratios, tf, tp = [], [], []
        for i in range(args.reps + 2):
            a = one(fast, x)
            b = one(plain, x)
            if i >= 2:  # two warm-up pairs
                tf.append(a)
                tp.append(b)
                ratios.append(b / a)
        print(f"batch {batch} x 256 x {side}x{side}: winograd {statistics.median(tf) * 1e3:.1f} ms, conv2d "
              f"{statistics.median(tp) * 1e3:.1f} ms, speedup (median of pair ratios) {statistics.median(ratios):.3f}x "
              f"[quartiles {statistics.quantiles(ratios, n=4)[0]:.2f}-{statistics.quantiles(ratios, n=4)[2]:.2f}]; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
