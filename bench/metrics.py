"""Speed of the batched non-learned metrics against a per-image scikit-image / numpy loop, in one process.

Computes PSNR, MAE, SSIM, CSS, LNCC, MI (64 bins) and BC (256 bins) for N pairs (default 1,060 at 256x256, like
the paper's test set) with ``sonoshift.metrics.pair_metrics`` (batched torch, chunked), then the same numbers
one image at a time with scikit-image (SSIM, PSNR), scipy.ndimage (CSS, LNCC windows) and numpy (MAE, MI, BC
histograms). Prints both times, the ratio, the largest difference per metric, and the masked batched time.

    python bench/metrics.py                    # 1,060 pairs, 256x256, 2 worker threads, full loop
    python bench/metrics.py --loop-n 200       # time the loop on 200 pairs and extrapolate

Wall time is what the target speaks of (batched on 2 cores against the single-threaded loop); CPU time is
printed too because on a shared machine the wall time mostly measures the other users.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, uniform_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sonoshift.errors import exit_on_error
from sonoshift.metrics import pair_metrics
from sonoshift.metrics.lncc import LNCC_EPS
from sonoshift.metrics.ssim import C2, C3


def make_pairs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n speckle-like uint8-valued pairs in [0, 1] (b = a darkened, blurred and re-noised) and a fan-shaped mask."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, size // 8, size // 8, generator=g)
    base = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    speckle = -torch.log(torch.rand(n, size, size, generator=g).clamp_min(1e-6))
    a = (base * speckle * 0.6).clamp(0, 1)
    b = (0.8 * base + 0.15 * torch.randn(n, size, size, generator=g) * base).clamp(0, 1)
    a, b = (a * 255).round() / 255, (b * 255).round() / 255
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    ang = torch.atan2(xx - size / 2, yy.float() + size * 0.2)
    r = ((xx - size / 2) ** 2 + (yy + size * 0.2) ** 2).sqrt()
    fan = (ang.abs() < 0.6) & (r > size * 0.25) & (r < size * 1.15)
    return a, b, fan.expand(n, size, size).contiguous()


def loop_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """One pair with scikit-image / scipy / numpy (float64)."""
    out = {"psnr": peak_signal_noise_ratio(b, a, data_range=1), "mae": float(np.abs(a - b).mean())}
    out["ssim"] = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1)  # fmt: skip
    f = lambda x: gaussian_filter(x, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    sab = np.sqrt(np.maximum(va, 0) * np.maximum(vb, 0))
    out["css"] = float((0.5 * ((2 * sab + C2) / (va + vb + C2) + (cov + C3) / (sab + C3))).mean())
    u = lambda x: uniform_filter(x, 9)[4:-4, 4:-4]  # noqa: E731
    ma, mb = u(a), u(b)
    la, lb, lab = u(a * a) - ma**2, u(b * b) - mb**2, u(a * b) - ma * mb
    out["lncc"] = float(((lab + LNCC_EPS) / np.sqrt((np.maximum(la, 0) + LNCC_EPS) * (np.maximum(lb, 0) + LNCC_EPS))).mean())
    p, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=64, range=[[0, 1], [0, 1]])
    p = p / p.sum()
    pa, pb = p.sum(1), p.sum(0)
    ent = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()  # noqa: E731
    ha, hb = ent(pa), ent(pb)
    out["mi"] = 2 * (ha + hb - ent(p)) / (ha + hb)
    ha_, _ = np.histogram(a, bins=256, range=(0, 1))
    hb_, _ = np.histogram(b, bins=256, range=(0, 1))
    out["bc"] = float(np.sqrt(ha_ / ha_.sum() * hb_ / hb_.sum()).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1060)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2, help="worker threads (each with one torch thread)")
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--loop-n", type=int, default=0, help="pairs timed in the loop (0 = all); extrapolated to --n")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # parallelism comes from the worker threads (no OpenMP barriers per small op)
    a, b, fan = make_pairs(args.n, args.size, args.seed)
    print(f"{args.n} pairs at {args.size}x{args.size}, {args.workers} worker threads, chunk {args.chunk}")

    def timed(fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - w, time.process_time() - c

    pair_metrics(a[:8], b[:8], chunk=args.chunk, workers=args.workers)  # warm-up
    batched, t_batch, c_batch = timed(lambda: pair_metrics(a, b, chunk=args.chunk, workers=args.workers))
    _, t_mask, c_mask = timed(lambda: pair_metrics(a, b, fan, chunk=args.chunk, workers=args.workers))

    n_loop = args.loop_n or args.n
    an, bn = a[:n_loop].double().numpy(), b[:n_loop].double().numpy()
    loop, t_loop, c_loop = timed(lambda: [loop_metrics(x, y) for x, y in zip(an, bn)])
    t_loop, c_loop = t_loop * args.n / n_loop, c_loop * args.n / n_loop

    print(f"batched (torch):          wall {t_batch:7.2f} s  cpu {c_batch:7.2f} s  ({args.n / t_batch:.0f} pairs/s)")
    print(f"batched with FOV mask:    wall {t_mask:7.2f} s  cpu {c_mask:7.2f} s")
    extra = "" if n_loop == args.n else f"  (timed on {n_loop} pairs, extrapolated)"
    print(f"loop (skimage/numpy):     wall {t_loop:7.2f} s  cpu {c_loop:7.2f} s{extra}")
    print(f"speed-up: wall {t_loop / t_batch:.1f}x, cpu {c_loop / c_batch:.1f}x")
    for k in batched:
        ref = np.array([r[k] for r in loop])
        print(f"  max |batched - loop| {k:5s}: {np.abs(batched[k][:n_loop].numpy() - ref).max():.2e}")


if __name__ == "__main__":
    exit_on_error(main)
