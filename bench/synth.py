"""Sampling speed and quality of the synthesizer: DDPM 1000 steps vs DPM-Solver++ 20 vs DDIM 50, side by side.

For one trained run, each sampler makes the same fixed number of images (same conditions: planes cycled, GA
evenly spaced over the range, same per-image seeds), in one process, one after the other. Printed per sampler:
frames/s (process CPU time is printed too, since wall time on a shared machine is distorted by other jobs) and
KID with a 95% bootstrap interval in the ultrasound-domain embedding (the project's plane classifier) against
held-out real frames (the test split of the training data). Goal: DPM-Solver++ 20 >= 40x faster than DDPM 1000 with its KID inside DDPM's interval.

    python bench/synth.py --model runs/synth48 --n 64                  # judges trained here on the real frames
    python bench/synth.py --model runs/synth48 --judges runs/eval48/judges --n 64 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sonoshift.errors import exit_on_error
from sonoshift.seeding import make_generator
from sonoshift.synth import load_synthesizer
from sonoshift.synth.evaluation.evaluate import load_images
from sonoshift.synth.evaluation.judges import load_judges, train_judges
from sonoshift.synth.evaluation.realism import fid_kid_bootstrap
from sonoshift.synth.write import parse_ga, parse_planes

SAMPLERS = (("ddpm", 1000), ("dpmpp", 20), ("ddim", 50))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--judges", default=None, help="judges folder (evaluate-synth output); default: train here")
    ap.add_argument("--n", type=int, default=64, help="images per sampler (fixed sample count)")
    ap.add_argument("--ga", default="", help="GA range lo:hi (default: the training GA range)")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_synthesizer(args.model, args.device)
    real = pipe.metadata["datasets"]
    size = pipe.size
    held = load_images(real, ["test"], size, scored_only=True)  # scored only: the African test part may be in it
    if args.judges:
        judges = load_judges(args.judges)
    else:
        train, val = load_images(real, ["train"], size), load_images(real, ["val"], size)
        planes = tuple(sorted({p for p in train.plane if p}))
        enc = lambda s: torch.tensor([planes.index(p) if p in planes else -1 for p in s.plane])  # noqa: E731
        judges = train_judges(train.x, enc(train), torch.tensor(train.ga, dtype=torch.float32), planes,
                              val_images=val.x, val_plane=enc(val), progress=False)
    f_held = judges.embed(held.x)
    ga_known = held.ga[np.isfinite(held.ga)]
    ga_text = args.ga or (f"{ga_known.min():.1f}:{ga_known.max():.1f}" if len(ga_known) else "")
    planes = parse_planes("all", pipe.planes, args.n)
    gas = parse_ga(ga_text, args.n)
    print(f"model {args.model}: {args.n} images per sampler at {size} px, planes cycled {pipe.planes}, GA {ga_text}, "
          f"guidance {args.guidance if args.guidance is not None else pipe.cfg.diffusion.guidance}; "
          f"{len(held.x)} held-out real frames; torch threads {torch.get_num_threads()}")
    rows = []
    for name, steps in SAMPLERS:
        gens = [make_generator(i, device=pipe.device) for i in range(args.n)]
        t0, c0 = time.perf_counter(), time.process_time()
        x = pipe(plane=planes, ga=gas, n=args.n, generator=gens, sampler=name, steps=steps,
                 guidance=args.guidance, batch_size=args.batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        r = fid_kid_bootstrap(judges.embed(x), f_held, n_boot=args.n_boot,
                              generator=torch.Generator().manual_seed(0))
        rows.append((name, steps, args.n / wall, args.n / cpu, r))
        print(f"  {name:6s} {steps:5d} steps: {args.n / wall:8.3f} frames/s wall, {args.n / cpu:8.3f} frames per "
              f"CPU-s; KID {r['kid']:.4f} [{r['kid_lo']:.4f}, {r['kid_hi']:.4f}]  FID {r['fid']:.2f}", flush=True)
    base = rows[0]
    print("\n| sampler | steps | frames/s (wall) | frames per CPU-s | speed-up vs DDPM 1000 (CPU) | KID [95% CI] | "
          "inside DDPM interval |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, steps, fps, cps, r in rows:
        inside = base[4]["kid_lo"] <= r["kid"] <= base[4]["kid_hi"]
        print(f"| {name} | {steps} | {fps:.3f} | {cps:.3f} | {cps / base[3]:.1f}x | {r['kid']:.4f} "
              f"[{r['kid_lo']:.4f}, {r['kid_hi']:.4f}] | {'yes' if inside else 'no'} |")


if __name__ == "__main__":
    exit_on_error(main)
