"""The results table with a bootstrap interval over patients, and the texture check, for scored run folders.

``ci_table(runs)`` reads each run's ``metrics.csv`` (written by `sonoshift evaluate`) and, for one reference mode
(default the simulator ground truth), gives per method the mean of each metric over frames with a 95% patient
bootstrap interval (``metrics.bootstrap``), plus the texture check: the mean distance between the output's and
the reference's radially averaged log power spectra (``metrics.spectrum``, inside the field of view, dB, lower
is closer). Runs are listed in the given order (the untranslated baseline first).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from sonoshift.metrics.bootstrap import patient_bootstrap
from sonoshift.metrics.spectrum import spectrum_distance

METRICS: tuple[str, ...] = ("psnr", "ssim", "lncc", "bc")


def _spectrum(run: Path, rows: list[dict[str, str]], reference: str) -> np.ndarray:
    from sonoshift.evaluate import dataset_root, read_gray, read_outputs, resolve

    meta = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    root = dataset_root(run, meta)
    column = {"gt": "gt_path", "target": "target_path", "source": "source_path"}[reference]
    by_output = {r["output_path"]: r for r in read_outputs(run)}
    out = []
    for r in rows:
        o = by_output.get(Path(r["output_path"]).as_posix()) or by_output.get(r["output_path"])
        if o is None or not o.get(column):
            out.append(float("nan"))
            continue
        a = read_gray(run / o["output_path"]).astype(np.float32) / 255
        b = read_gray(resolve(o[column], root)).astype(np.float32) / 255
        m = read_gray(resolve(o["mask_path"], root)) > 127 if o.get("mask_path") else np.ones(a.shape, bool)
        out.append(float(spectrum_distance(torch.from_numpy(a * m)[None], torch.from_numpy(b * m)[None])[0]))
    return np.array(out)


def ci_table(runs: list[Path], reference: str = "gt", metrics: tuple[str, ...] = METRICS, texture: bool = True,
             seed: int = 0) -> str:
    """A Markdown table: one row per run with mean [95% patient bootstrap] per metric (and the texture check)."""
    head = ["method", *[m.upper() for m in metrics]] + (["spectrum dB (lower = closer texture)"] if texture else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    n_pat = 0
    for run in runs:
        path = Path(run) / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("reference") == reference]
        if not rows:
            continue
        patients = np.array([r["patient_id"] for r in rows])
        n_pat = max(n_pat, len(set(patients)))
        cells = [rows[0].get("method") or Path(run).name]
        for m in metrics:
            vals = np.array([float(r[m]) if r.get(m) not in (None, "") else np.nan for r in rows])
            cells.append(str(patient_bootstrap(vals, patients, seed=seed)))
        if texture:
            cells.append(str(patient_bootstrap(_spectrum(Path(run), rows, reference), patients, seed=seed)))
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nMean over frames [95% bootstrap interval over {n_pat} patients], reference: {reference}; "
            "the interval resamples patients, not frames.\n")
    return "\n".join(lines) + "\n" + note
