"""Does keeping freed heap memory (glibc mallopt, engine/memory.py) pay for a CycleGAN training step?

Runs the same seeded steps in two fresh processes, glibc defaults and ``keep_freed_memory()``, and prints per step
the minor page faults (load-independent) and the wall time (affected by other processes: compare with the load
average printed). Page faults are a property of a run, not of a unit: they live here, not in tests/.

    python bench/malloc_tuning.py --threads 2 --size 128 --batch 1 --ngf 64 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import torch

    if args.keep:
        from sonoshift.engine.memory import keep_freed_memory

        keep_freed_memory()
    from sonoshift.config import load_config
    from sonoshift.engine.loop import StepContext
    from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    over = [f"model.ngf={args.ngf}", f"model.ndf={args.ngf}", "train.channels_last=false"]
    if args.no_winograd:
        over.append("model.fast_conv=false")
    cfg = load_config(CycleGANConfig, None, over)
    method = CycleGAN(cfg, torch.device("cpu"), (args.size, args.size))
    ctx = StepContext(device=torch.device("cpu"), autocast_dtype=None, accum_steps=1, rank=0, world_size=1, seed=0,
                      channels_last=False, grad_clip=0.0, optimizers=method.optimizers, scaler=None)
    batch = {"source": torch.rand(args.batch, 1, args.size, args.size) * 2 - 1,
             "target": torch.rand(args.batch, 1, args.size, args.size) * 2 - 1}
    faults, times = [], []
    for i in range(args.steps + 1):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        method.train_step(batch, ctx)
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(json.dumps({"faults": statistics.median(faults), "time": statistics.median(times),
                      "load": os.getloadavg()[0]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--no-winograd", action="store_true")
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    base = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--size", str(args.size),
            "--batch", str(args.batch), "--ngf", str(args.ngf), "--steps", str(args.steps)]
    if args.no_winograd:
        base.append("--no-winograd")
    res = {}
    for name, extra in (("glibc defaults", []), ("keep_freed_memory", ["--keep"]), ("glibc defaults again", [])):
        out = subprocess.run(base + extra, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        res[name] = json.loads(out)
        r = res[name]
        print(f"{name:22s} minor faults/step {r['faults']:>9.0f}  s/step {r['time']:.2f}  load {r['load']:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
