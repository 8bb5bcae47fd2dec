"""The named GPU synthesis configs, smoke-sized on a CPU: each config's own network, loss, sampler and measurements.

    python bench/synth_smoke.py --out /tmp/synth_smoke                      # the three GPU simulator configs
    python bench/synth_smoke.py --out /tmp/synth_smoke --dry-run            # only print the commands
    python bench/synth_smoke.py --out OUT --config configs/cpu/synth_latent.yaml --steps 40 --batch 4

A GPU is needed to train these configs (60k-120k steps of batch 64 at 128-256 px); without one, issue 15 asks for
the same measurements at smoke size. For every config this runs the user's commands with the config unchanged
except the budget (``train.max_steps``, ``train.batch_size``, ``latent.autoencoder_steps``, CPU device and fp32):

1. ``sonoshift simulate`` once (a small plane-balanced, GA-spread study at 256 px) and ``sonoshift prepare`` at each
   config's image size;
2. ``sonoshift train synth -c CONFIG`` for ``--steps`` steps;
3. ``sonoshift synthesize --plane all`` over the GA range with the config's guidance and sampler, ``--sample-steps``
   solver steps;
4. ``sonoshift evaluate-synth``: plane macro-F1 by the real-trained judge, GA of synthetic heads against the
   GA-shuffled baseline, near-copies, KID (the judges are trained once per image size and reused).

It then prints one table: seconds per training step, CPU seconds of training and sampling, and the measurements. At a few
steps the samples are noise, so the measurements are at their chance levels: the table shows that each config's
whole chain runs and what one step and one sample cost on a CPU, not what the config reaches.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import shlex
import subprocess
import sys
import time
from math import nan
from pathlib import Path

from sonoshift.errors import exit_on_error

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/gpu/synth_128.yaml", "configs/gpu/synth_256.yaml", "configs/gpu/synth_latent_256.yaml"]
SWEEPS = "tr-mid,std-head,std-abdomen,std-femur"


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _config(path: str):
    from sonoshift.config import load_config
    from sonoshift.synth.config import SynthConfig

    return load_config(SynthConfig, REPO / path, [])


def budget_overrides(cfg, steps: int, batch: int, threads: int) -> list[str]:
    """KEY=VALUE overrides that change only the budget (and move the run to the CPU)."""
    over = [f"train.max_steps={steps}", f"train.batch_size={batch}", "train.accum_steps=1", "train.device=cpu",
            "train.precision=fp32", "train.num_workers=0", f"train.threads={threads}", f"train.checkpoint_every={steps}",
            "train.image_every=0", "train.log_every=1", "train.channels_last=false"]
    if cfg.latent.enabled:
        over.append(f"latent.autoencoder_steps={max(1, steps // 2)}")
    if cfg.diffusion.lr_warmup_steps >= steps:
        over.append(f"diffusion.lr_warmup_steps={max(1, steps // 4)}")
    return over


def plan(args: argparse.Namespace) -> list[dict]:
    """One entry per config: its stages as (output that marks the stage done, command)."""
    sh = [sys.executable, "-m", "sonoshift"]
    out = args.out
    sim = out / "sim"
    stages_sim = (sim / "simulation.json", sh + ["simulate", "-o", str(sim), "--patients", str(args.patients), "--size",
                                              "256", "--frames-per-sweep", str(args.frames), "--ga-min", "16",
                                              "--ga-max", "40", "--sweeps", SWEEPS, "-q", "ga_spread=stratified"])
    th = ["--threads", str(args.threads)]
    entries, judges = [], {}
    for path in args.config:
        cfg = _config(path)
        size, name = cfg.data.size, Path(path).stem
        data = out / f"data{size}"
        run, syn, ev = out / name / "run", out / name / "syn", out / name / "eval"
        prep = (data / "dataset.json", sh + ["prepare", str(sim), "--out", str(data), "-q", f"resize.size={size}",
                                             "source_domain=handheld", "target_domain=cart",
                                             "split.fractions=[0.5,0.15,0.35]"])
        train = (run / "checkpoints" / "latest", sh + ["train", "synth", "--data", str(data), "-c", path, "-o", str(run),
                                                      *budget_overrides(cfg, args.steps, args.batch, args.threads)])
        synth = (syn / "dataset.json", sh + ["synthesize", "--model", str(run), "--plane", "all", "--ga", "18:39.5",
                                             "--n", str(args.n), "--steps", str(args.sample_steps), "-q", *th,
                                             "--out", str(syn)])
        judge_args = (["--judges", str(judges[size])] if size in judges else
                      ["--judge-steps", str(args.judge_steps), "--judge-set", "train.eval_every=20"])
        judges.setdefault(size, ev / "judges")
        evaluate = (ev / "metrics.json", sh + ["evaluate-synth", str(syn), "-q", *th, *judge_args, "--cas-steps",
                                               str(args.judge_steps), "--out", str(ev)])
        entries.append({"name": name, "cfg": cfg, "stages": [stages_sim, prep, train, synth, evaluate], "run": run,
                        "eval": ev})
    return entries


def _read_cost(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def step_seconds(run: Path) -> float:
    """Median wall seconds between consecutive logged denoiser steps (the run logs every step)."""
    times = [r["time"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def row(entry: dict, cost: dict) -> str:
    m = json.loads((entry["eval"] / "metrics.json").read_text())
    fid, mem = m.get("fidelity", {}), m.get("memorization", {})
    ga = fid.get("ga_synthetic_heads", {})
    kid = m.get("realism", {}).get("synthetic_vs_heldout", {})
    mae, shuffled = ga.get("mae", nan), ga.get("mae_shuffled", nan)
    return (f"| {entry['name']} | {entry['cfg'].data.size} | {step_seconds(entry['run']):.2f} | "
            f"{cost.get('train', nan):.0f} | {cost.get('synth', nan):.0f} | {cost.get('eval', nan):.0f} | "
            f"{fid.get('plane_macro_f1_synthetic', nan):.3f} | {mae:.2f} ({shuffled:.2f}), {mae / shuffled:.2f} | "
            f"{ga.get('spearman', nan):.2f} | {mem.get('n_flagged', '?')} / {m.get('n_synthetic', '?')} | "
            f"{kid.get('kid', nan):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="work folder (simulated data, runs, samples, evaluations)")
    ap.add_argument("--config", action="append", help="synthesis config (repeatable; default: the three GPU configs)")
    ap.add_argument("--steps", type=int, default=8, help="training steps per config")
    ap.add_argument("--batch", type=int, default=2, help="training batch per step")
    ap.add_argument("--n", type=int, default=16, help="synthetic images per config (plane x GA grid)")
    ap.add_argument("--sample-steps", type=int, default=4, help="solver steps per sample")
    ap.add_argument("--judge-steps", type=int, default=60, help="plane-judge and CAS training steps (per image size)")
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--frames", type=int, default=6, help="frames per sweep of the simulated study")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.config = args.config or CONFIGS
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the latent configs split them between autoencoder and denoiser)")
    entries = plan(args)
    costs: dict[str, dict] = {}
    printed: set[str] = set()
    for e in entries:
        c = costs.setdefault(e["name"], _read_cost(args.out / e["name"] / "cost.json"))
        for done, cmd in e["stages"]:
            line = shlex.join(["sonoshift", *cmd[3:]])
            if line in printed:  # the simulated study and each size's prepared data are shared
                continue
            printed.add(line)
            print(line, flush=True)
            if args.dry_run or done.exists():
                continue
            t0, w0 = _cpu_children(), time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True)
            stage = {"train": "train", "synthesize": "synth", "evaluate-synth": "eval"}.get(cmd[3])
            if stage:  # kept beside the run, so a rerun that skips finished stages still reports them
                c[stage] = _cpu_children() - t0
                c[f"{stage}_wall"] = time.perf_counter() - w0
                cost_file = args.out / e["name"] / "cost.json"
                cost_file.write_text(json.dumps({**_read_cost(cost_file), **c}, indent=1))
    if args.dry_run:
        return
    print(f"\n| config | px | s per training step (batch {args.batch}, median wall) | training CPU-s | "
          f"synthesis CPU-s ({args.n} images, {args.sample_steps} steps) | evaluation CPU-s | plane macro-F1 | "
          "GA MAE (shuffled), ratio | GA Spearman | near-copies | KID |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in entries:
        print(row(e, costs.get(e["name"], {})))


if __name__ == "__main__":
    exit_on_error(main)
