"""Training-step cost of the synthesizer: eager PyTorch against ``torch.compile`` (and other variants), side by side.

Builds the synthesizer method of a config (``-c``, with dotted overrides) on a prepared dataset, then times whole
optimiser steps (DDPM loss on a real batch, backward, AdamW, EMA update) for each variant in interleaved blocks,
so that load from other processes hits every variant alike. A variant is ``compile`` (``torch.compile``),
``channels_last``, or a set of config overrides separated by ``;`` (``"model.block_out_channels=[24,48,96,128]"``,
``"train.batch_size=12;train.max_steps=2400"``). Prints ms per step (median over blocks), the ratio to the
baseline (the config as given, eager), and the wall minutes the variant's ``train.max_steps`` would take at that
rate (the engine adds ~15 % for data, logging and checkpoints). A compiled variant's compile time is printed
apart (paid once per run).

    python bench/synth_step.py --data DATA -c configs/cpu/synth.yaml --threads 2 [--variant compile] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch
from torch.utils.data import default_collate

from sonoshift.config import load_config
from sonoshift.errors import exit_on_error
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.train import build, training_data


class _Ctx:
    """The part of the engine's StepContext that ``Synth.loss`` uses (fp32, no accumulation)."""

    accum_steps = 1

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _batch(ds, n: int, start: int) -> dict:
    return default_collate([ds[(start + i) % len(ds)] for i in range(n)])


def _stepper(method, variant: str):
    net = method.modules["unet"]
    if variant == "channels_last":
        net.to(memory_format=torch.channels_last)
    if variant == "compile":
        method.net = torch.compile(net)
    opt, ema, ctx = method.optimizers["unet"], method.ema.get("unet"), _Ctx()

    def step(batch: dict) -> None:
        loss = method.loss(batch, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), method.cfg.train.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(net)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset (the synthesizer's --data)")
    ap.add_argument("-c", "--config", default="configs/cpu/synth.yaml")
    ap.add_argument("--variant", action="append", default=None,
                    help="compile | channels_last | KEY=VALUE[;KEY=VALUE...] config overrides; repeatable "
                         "(eager, the config as given, is always the first row and the baseline)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per block")
    ap.add_argument("--blocks", type=int, default=3, help="interleaved blocks per variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides (as on the CLI)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config(SynthConfig, a.config, a.overrides)
    ds = training_data(a.data, cfg)
    variants = ["eager"] + [v for v in (a.variant or ["compile"]) if v != "eager"]
    base = build(cfg, ds, torch.device("cpu"))
    steppers, cfgs, first = {}, {}, {}
    for v in variants:
        if "=" in v:  # a config variant: its own network, built from the same seed
            cfgs[v] = load_config(SynthConfig, a.config, [*a.overrides, *v.split(";")])
            m = build(cfgs[v], ds, torch.device("cpu"))
        else:
            cfgs[v], m = cfg, copy.deepcopy(base)
        steppers[v] = _stepper(m, v)
        n = cfgs[v].train.batch_size
        t0 = time.perf_counter()
        for i in range(3):  # warm-up (and, for compile, the compilation)
            steppers[v](_batch(ds, n, i * n))
        first[v] = time.perf_counter() - t0
    times: dict[str, list[float]] = {v: [] for v in variants}
    k = 0
    for _ in range(a.blocks):
        for v in variants:
            n = cfgs[v].train.batch_size
            batches = [_batch(ds, n, (k + i) * n) for i in range(a.steps)]
            t0 = time.perf_counter()
            for b in batches:
                steppers[v](b)
            times[v].append((time.perf_counter() - t0) / a.steps)
        k += a.steps
    ref = statistics.median(times["eager"])
    print(f"synthesizer training step, {a.config} {' '.join(a.overrides)}, {a.threads} threads, "
          f"{a.blocks} x {a.steps} steps per variant")
    for v in variants:
        ms, c = statistics.median(times[v]), cfgs[v]
        print(f"  {v:40s} batch {c.train.batch_size:3d} {1000 * ms:7.1f} ms/step  x{ref / ms:4.2f} vs eager  "
              f"{c.train.max_steps} steps = {c.train.max_steps * ms / 60:5.1f} min  (first 3 steps {first[v]:.1f} s)")


if __name__ == "__main__":
    exit_on_error(main)
