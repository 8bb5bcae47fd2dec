"""The results table with a bootstrap interval over patients, and the texture check, for scored run folders.

``ci_table(runs)`` reads each run's ``metrics.csv`` (written by `sonoshift evaluate`) and, for one reference mode
(default the simulator ground truth), gives per method the mean of each metric over frames with a 95% patient
bootstrap interval (``metrics.bootstrap``), plus the texture check: the mean distance between the output's and
the reference's radially averaged log power spectra (``metrics.spectrum``, inside the field of view, dB, lower
is closer). Runs are listed in the given order (the untranslated baseline first).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.metrics.bootstrap import patient_bootstrap
from sonoshift.metrics.spectrum import spectrum_distance

METRICS: tuple[str, ...] = ("psnr", "ssim", "lncc", "bc")
TEXTURE = "spectrum dB (lower = closer texture)"


def _spectrum(run: Path, rows: list[dict[str, str]], reference: str) -> np.ndarray:
    from sonoshift.io.images import read_gray
    from sonoshift.runs import open_run

    folder = open_run(run, require_info=False)
    column = {"gt": "gt_path", "target": "target_path", "source": "source_path"}[reference]
    by_output = {r["output_path"]: r for r in folder.outputs()}
    out = []
    for r in rows:
        o = by_output.get(r["output_path"])
        ref = folder.resolve(o.get(column)) if o is not None else None
        if ref is None:
            out.append(float("nan"))
            continue
        a = read_gray(run / o["output_path"]).astype(np.float32) / 255
        b = read_gray(ref).astype(np.float32) / 255
        mask_path = folder.resolve(o.get("mask_path"))
        m = read_gray(mask_path) > 127 if mask_path is not None else np.ones(a.shape, bool)
        out.append(float(spectrum_distance(torch.from_numpy(a * m)[None], torch.from_numpy(b * m)[None])[0]))
    return np.array(out)


def ci_frame(runs: list[Path], reference: str = "gt", metrics: tuple[str, ...] = METRICS, texture: bool = True,
             seed: int = 0) -> tuple[pd.DataFrame, int]:
    """One row per scored run: the method, then "mean [lo, hi]" (95% patient bootstrap) per metric (and the
    texture check); also the largest number of patients behind a row. Runs without ``reference`` rows are left out."""
    head = ["method", *[m.upper() for m in metrics]] + ([TEXTURE] if texture else [])
    table: list[list[str]] = []
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
        table.append(cells)
    return pd.DataFrame(table, columns=head), n_pat


def ci_note(n_patients: int, reference: str) -> str:
    """The sentence under every interval table."""
    return (f"Mean over frames [95% bootstrap interval over {n_patients} patients], reference: {reference}; "
            "the interval resamples patients, not frames.")


def ci_table(runs: list[Path], reference: str = "gt", metrics: tuple[str, ...] = METRICS, texture: bool = True,
             seed: int = 0) -> str:
    """A Markdown table: one row per run with mean [95% patient bootstrap] per metric (and the texture check)."""
    from sonoshift.report.sections import frame_markdown

    frame, n_pat = ci_frame(runs, reference, metrics, texture, seed)
    return frame_markdown(frame) + "\n" + ci_note(n_pat, reference) + "\n"
