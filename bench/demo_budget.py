"""What the demo's data and budget changes (issue 12) cost, in CPU seconds measured side by side in one process.

    python bench/demo_budget.py --data runs/demo/data --cyclegan runs/demo/models/cyclegan [--ddgan RUN]

Measures, with one thread (process CPU time, so other jobs on the machine distort it little): simulating and
preparing a frame, a DDGAN / cascade training step, harmonize + evaluate per test frame for the untranslated,
histogram-matching, CycleGAN and DDGAN rows, the blurred CycleGAN's sigma search, and the segmenter's evaluation
per frame. Then prints the CPU seconds of the stages that change between the former demo (12 patients x 6 VSI
sweeps x 32 frames, 384 test frames, 4 scored rows, DDGAN/cascade 400 steps) and the new one (24 patients x 4
sweeps x 20 frames, 640 test frames, 6 scored rows, 300 steps), and the difference. Stages that do not change
(install, CycleGAN 1,500 steps, segmenter training, report) are left out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sonoshift.errors import exit_on_error  # noqa: E402


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cyclegan", type=Path, required=True)
    ap.add_argument("--ddgan", type=Path, default=None, help="a trained DDGAN run (else its row is not timed)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sonoshift.baselines import choose_sigma, fit_histogram_match
    from sonoshift.config import load_config
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.evaluate import EvaluateConfig, evaluate_run
    from sonoshift.inference.harmonize import harmonize_dataset
    from sonoshift.methods import load_translator
    from sonoshift.methods.cascade import CascadeConfig, train_cascade
    from sonoshift.methods.ddgan import DDGANConfig, train_ddgan
    from sonoshift.sim.simulate import SimConfig, simulate
    from sonoshift.inference.translate import Untranslated

    tmp = Path(tempfile.mkdtemp(prefix="demo_budget_"))
    per: dict[str, float] = {}
    try:
        sim_cfg = SimConfig(patients=3, size=160, frames_per_sweep=8, sweeps=("tr-mid", "std-head"), workers=1,
                            contact_sheet=False)
        n_frames = 3 * 2 * 8  # per profile
        per["simulate / frame"] = cpu(lambda: simulate(tmp / "sim", sim_cfg, progress=False)) / n_frames
        prep = PrepareConfig(resize=ResizeConfig(size=64), source_domain="handheld", target_domain="cart")
        per["prepare / frame"] = cpu(lambda: prepare([tmp / "sim"], tmp / "prep", prep, progress=False)) / n_frames
        common = [f"cyclegan={args.cyclegan}", "train.threads=1", "train.tensorboard=false", "train.image_every=0",
                  "train.checkpoint_every=1000"]
        methods = (("ddgan", DDGANConfig, train_ddgan, 10), ("cascade", CascadeConfig, train_cascade, 10))
        for name, cls, fn, steps in methods:
            cfg = load_config(cls, ROOT / "configs" / "cpu" / f"{name}.yaml", [*common, f"train.max_steps={steps}"])
            per[f"{name} step"] = cpu(lambda: fn(args.data, cfg, tmp / name, progress=False)) / steps
        cg = load_translator(args.cyclegan)
        rows = {"untranslated": Untranslated("handheld", "cart", cg.image_size),
                "histogram_match": fit_histogram_match(args.data, "handheld", "cart"), "cyclegan": args.cyclegan}
        if args.ddgan is not None:
            rows["ddgan"] = args.ddgan
        n_test = len(__import__("numpy").load(args.data / "cache" / "test" / "handheld.npy", mmap_mode="r"))
        for name, model in rows.items():
            def run(model=model, name=name):
                harmonize_dataset(model, args.data, tmp / f"h_{name}", progress=False)
                evaluate_run(tmp / f"h_{name}", EvaluateConfig(), progress=False)
            per[f"harmonize+evaluate / frame: {name}"] = cpu(run) / n_test
        per["blur sigma search (128 val frames)"] = cpu(lambda: choose_sigma(cg, args.data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in per.items():
        print(f"{k:<48} {v:8.3f} CPU s")
    h = {k.split(": ")[1]: v for k, v in per.items() if k.startswith("harmonize")}
    h_method = max(h.get("ddgan", 0.0), h["cyclegan"])
    old = {
        "simulate + prepare (2304 frames/profile)": 2304 * (per["simulate / frame"] + per["prepare / frame"]),
        "DDGAN + cascade (400 steps each)": 400 * (per["ddgan step"] + per["cascade step"]),
        "harmonize + evaluate (384 frames x 4 rows)": 384 * (h["untranslated"] + h["cyclegan"] + 2 * h_method),
    }
    new = {
        "simulate + prepare (1920 frames/profile)": 1920 * (per["simulate / frame"] + per["prepare / frame"]),
        "DDGAN + cascade (300 steps each)": 300 * (per["ddgan step"] + per["cascade step"]),
        "harmonize + evaluate (640 frames x 6 rows)": 640 * (h["untranslated"] + h["histogram_match"]
                                                            + 2 * h["cyclegan"] + 2 * h_method)
        + per["blur sigma search (128 val frames)"],
    }
    print("\nformer demo, changing stages:")
    for k, v in old.items():
        print(f"  {k:<46} {v:8.1f} CPU s")
    print("new demo, changing stages:")
    for k, v in new.items():
        print(f"  {k:<46} {v:8.1f} CPU s")
    d = sum(new.values()) - sum(old.values())
    print(f"difference: {d:+.1f} CPU s = {d / 60:+.1f} CPU min (wall on 2 cores: between {d / 120:+.1f} and "
          f"{d / 60:+.1f} min; segmenter evaluation per row not included)")


if __name__ == "__main__":
    exit_on_error(main)
