"""Pool the quality of several training seeds from `bench/realtime.py --json` files (same split, same frames).

A GAN-trained network's downstream Dice swings between seeds and checkpoints, so one run per variant cannot say
whether a student beats the network trained without a teacher. Rows of the quality tables are put in groups by
label (``--group NAME=REGEX``, the regex matched against the row labels, e.g. ``student=^student (eager|s[12])$``);
each group prints the mean and the range (min..max) of its rows' GT PSNR, SSIM and Dice. ``--diff A-B`` prints the
paired difference of two groups on the same frames: per frame, each group's mean over its rows, then A minus B,
with a 95% patient bootstrap interval (the seeds' variation is inside each group's mean, the patients' in the
interval).

    python bench/student_seeds.py q_dd.json --group "teacher=^teacher eager$" \
        --group "student=^student (eager|s[12])$" --group "no teacher=^(no-teacher baseline eager|no-teacher s[12])$" \
        --diff student-teacher --diff "student-no teacher"
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np

from sonoshift.errors import exit_on_error
from sonoshift.metrics.bootstrap import patient_bootstrap

METRICS = ("gt_psnr", "gt_ssim", "dice")


def load_rows(paths: list[str]) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Per-frame scores of every row of the JSON files (later files win on equal labels) and the frames' patients
    (all files must score the same frames)."""
    rows: dict[str, dict[str, np.ndarray]] = {}
    patients = None
    for path in paths:
        with open(path) as f:
            q = json.load(f)["quality"]
        p = np.asarray(q["patients"])
        if patients is not None and not np.array_equal(p, patients):
            raise SystemExit(f"{path} scores other frames than the first file.")
        patients = p
        rows.update({k: {m: np.asarray(v, dtype=np.float64) for m, v in d.items()} for k, d in q["per_frame"].items()})
    if patients is None:
        raise SystemExit("no input files.")
    return rows, patients


def group_frames(rows: dict[str, dict[str, np.ndarray]], pattern: str) -> dict[str, dict[str, np.ndarray]]:
    """The rows whose label matches ``pattern``."""
    got = {k: v for k, v in rows.items() if re.search(pattern, k)}
    if not got:
        raise SystemExit(f"no row label matches {pattern!r}; labels: {sorted(rows)}")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="bench/realtime.py --json outputs (quality on the same frames)")
    ap.add_argument("--group", action="append", default=[], metavar="NAME=REGEX")
    ap.add_argument("--diff", action="append", default=[], metavar="A-B", help="paired difference of two groups")
    args = ap.parse_args()
    rows, patients = load_rows(args.json)
    groups = {}
    for item in args.group:
        name, _, pattern = item.partition("=")
        groups[name] = group_frames(rows, pattern)
    metrics = [m for m in METRICS if all(m in v for g in groups.values() for v in g.values())]
    print("| group (rows) | " + " | ".join(f"{m} mean (min..max)" for m in metrics) + " |\n|---|"
          + "---|" * len(metrics))
    for name, g in groups.items():
        cells = []
        for m in metrics:
            means = [float(np.nanmean(v[m])) for v in g.values()]
            cells.append(f"{np.mean(means):.4f} ({min(means):.4f}..{max(means):.4f})")
        print(f"| {name} ({', '.join(g)}) | " + " | ".join(cells) + " |")
    if args.diff:
        print(f"\n| paired difference of group means, same frames (95% patient bootstrap, {len(set(patients))} "
              "patients) | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics))
    for item in args.diff:
        a, _, b = item.partition("-")
        cells = []
        for m in metrics:
            fa, fb = (np.nanmean(np.stack([v[m] for v in groups[k].values()]), axis=0) for k in (a, b))
            cells.append(str(patient_bootstrap(fa - fb, patients)))
        print(f"| {a} - {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    exit_on_error(main)
