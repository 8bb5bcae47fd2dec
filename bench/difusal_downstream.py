"""How much does the DiFUSAL loop's downstream plane classifier move with its training seed alone?

Trains the loop's downstream recipe (``difusal/downstream.py``) on one label regime's real frames with several
training seeds, for each LR schedule side by side (and with / without classical augmentation), and prints the test
macro-F1 mean and standard deviation over the seeds: the noise floor under every arm's score.

    python bench/difusal_downstream.py --data DATA60 -c configs/cpu/difusal.yaml --seed 3 --seeds 6 \\
        'label_fractions=[0.1]'
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from sonoshift.config import load_config
from sonoshift.difusal.config import DifusalConfig
from sonoshift.difusal.downstream import Models, train_plane
from sonoshift.difusal.evaluation import evaluate
from sonoshift.difusal.rounds import load_regimes
from sonoshift.errors import exit_on_error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset (as for sonoshift difusal --data)")
    ap.add_argument("-c", "--config", default="configs/cpu/difusal.yaml")
    ap.add_argument("--seed", type=int, default=0, help="loop seed (draws the regime's labelled patients)")
    ap.add_argument("--seeds", type=int, default=6, help="training seeds per recipe")
    ap.add_argument("--schedules", default="constant,cosine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the config")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(DifusalConfig, args.config, [*args.overrides, f"seed={args.seed}"])
    n, head = len(cfg.data.planes), cfg.data.planes.index(cfg.data.head_plane)
    regimes = load_regimes(cfg, args.data)  # before the header: a bad --data ends in one line, not a half table
    print(f"| regime | classical aug | LR schedule | steps | test macro-F1 mean | sd over {args.seeds} training seeds "
          "| per seed |")
    print("|---|---|---|---|---|---|---|")
    for reg in regimes:
        for aug in (False, True):
            for schedule in args.schedules.split(","):
                d = dataclasses.replace(cfg.downstream, lr_schedule=schedule)
                f1 = [evaluate(Models(train_plane(reg.train, n, d, s, classical_aug=aug), None), reg.test, n,
                               head)["macro_f1"] for s in range(args.seeds)]
                print(f"| {reg.name} | {aug} | {schedule} | {d.steps} | {np.mean(f1):.3f} | {np.std(f1, ddof=1):.3f} "
                      f"| {' '.join(f'{v:.2f}' for v in f1)} |", flush=True)


if __name__ == "__main__":
    exit_on_error(main)
