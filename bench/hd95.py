"""Speed of sonoshift's HD95 (scipy distance transforms) against MONAI's ``compute_hausdorff_distance``, in one
process, on the same label maps; prints both times, the ratio and the largest difference.

    python bench/hd95.py                  # 300 pairs of 5-class 128x128 maps (the demo's downstream evaluation)
    python bench/hd95.py --n 100 --size 256

The label maps are smooth random blobs (several classes per map, some touching the border), like segmenter
predictions; each class present in both maps is one HD95 call, as in ``downstream.evaluate_seg``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import scipy.ndimage as ndi
import torch

from sonoshift.errors import exit_on_error
from sonoshift.metrics.segmentation import hd95_per_class


def blobs(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    """(size, size) uint8 map of k classes: argmax of k smoothed noise fields, weighted toward background."""
    fields = np.stack([ndi.gaussian_filter(rng.random((size, size)), size / 16) for _ in range(k)])
    fields[0] += 0.04
    return fields.argmax(0).astype(np.uint8)


def monai_hd95(pred: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """HD95 per foreground class by MONAI (classes present in both maps only; NaN elsewhere)."""
    from monai.metrics import compute_hausdorff_distance

    out = np.full(k - 1, np.nan)
    for c in range(1, k):
        a, b = pred == c, ref == c
        if a.any() and b.any():
            ta = torch.as_tensor(a, dtype=torch.float32)[None, None]
            tb = torch.as_tensor(b, dtype=torch.float32)[None, None]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                out[c - 1] = float(compute_hausdorff_distance(ta, tb, include_background=True, percentile=95))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    pairs = [(blobs(rng, args.size, args.classes), blobs(rng, args.size, args.classes)) for _ in range(args.n)]
    monai_hd95(*pairs[0], args.classes)  # imports and warm-up outside the timing
    hd95_per_class(*pairs[0], args.classes)

    t0 = time.perf_counter()
    ours = [hd95_per_class(p, r, args.classes) for p, r in pairs]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [monai_hd95(p, r, args.classes) for p, r in pairs]
    t_monai = time.perf_counter() - t0

    both = np.isfinite(np.stack(ref))
    diff = np.abs(np.stack(ours)[both] - np.stack(ref)[both]).max()
    print(f"{args.n} pairs of {args.classes}-class {args.size}x{args.size} maps, 1 thread, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"sonoshift (scipy): {t_ours:.2f} s   MONAI: {t_monai:.2f} s   speed-up {t_monai / t_ours:.1f}x")
    print(f"largest difference: {diff:.2e} px over {int(both.sum())} class HD95 values")


if __name__ == "__main__":
    exit_on_error(main)
