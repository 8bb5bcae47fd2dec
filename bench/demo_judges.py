"""What the demo's downstream judges (plane classifier + GA estimator) add to `make demo`, in CPU seconds.

    python bench/demo_judges.py --demo runs/demo [--runs untranslated cyclegan] [--threads 1]

Needs a finished demo folder (its prepared data, segmenter and harmonized runs). With ``--threads`` torch threads,
measures process CPU time (other jobs on the machine distort it little) of: training the plane classifier as the
demo does (target domain, ``JudgesConfig`` defaults) and judging each given run (the first run also judges the
shared source and ground-truth frames, as in the demo). Prints each, the estimate for the demo's six runs, and, as
the ratio to compare against, the CPU seconds of one `harmonize + evaluate` stage of the same run measured in the
same process.
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


def cpu(fn) -> tuple[float, object]:
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--runs", nargs="+", default=["untranslated", "cyclegan"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--demo-runs", type=int, default=6, help="runs the full demo judges (for the estimate)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sonoshift.evaluate import EvaluateConfig, evaluate_run
    from sonoshift.pipeline.judges import JudgesConfig, RunJudges, judge_run, train_plane_judge

    data, tmp = args.demo / "data", Path(tempfile.mkdtemp(prefix="demo_judges_"))
    try:
        t_train, info = cpu(lambda: train_plane_judge(data, tmp / "clf", JudgesConfig(), domain="cart", seed=0,
                                                      progress=False))
        print(f"train plane classifier: {t_train:6.1f} CPU-s  (validation {info['validation']})")
        judges = RunJudges.load(tmp / "clf", args.demo / "models" / "segmenter")
        per_run = []
        for name in args.runs:
            run = tmp / name
            shutil.copytree(args.demo / "harmonized" / name, run)
            t, s = cpu(lambda r=run: judge_run(r, judges, data))
            per_run.append(t)
            print(f"judge {name:<14}: {t:6.1f} CPU-s  {s}")
        t_eval, _ = cpu(lambda: evaluate_run(tmp / args.runs[-1], EvaluateConfig(), False, force=True))
        later = per_run[-1] if len(per_run) > 1 else per_run[0]
        total = t_train + per_run[0] + later * (args.demo_runs - 1)
        print(f"evaluate {args.runs[-1]} (same process, for scale): {t_eval:6.1f} CPU-s; judging it costs "
              f"{later / t_eval:.2f}x of that")
        print(f"estimated added CPU time for {args.demo_runs} runs: {total:6.1f} CPU-s "
              f"(= train + first run + {args.demo_runs - 1} x later run)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    exit_on_error(main)
