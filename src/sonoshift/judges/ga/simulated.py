"""The GA estimator on simulated frames, where GA is known: head-plane frames of a prepared simulator dataset
(their ``pixel_size_mm`` comes from the simulator's fan geometry, rescaled by `prepare`).

Per frame: the HC measured from the segmenter's head probability (``hc_mm``) and from the frame's own anatomy
label map (``hc_label_mm``: what a perfect segmenter gives for this slice), each turned into GA (Hadlock and
INTERGROWTH-21st) and compared with the phantom's GA. A sweep slice rarely cuts the head at its widest, so even
the label-map GA runs low: the label-map row is the ceiling the image-based estimate can reach.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sonoshift.biometry.intergrowth import ga_weeks_from_hc as intergrowth_ga_weeks
from sonoshift.io.images import read_gray
from sonoshift.io.labels import read_labels
from sonoshift.downstream.segmenter import load_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc as hadlock_ga_from_hc
from sonoshift.judges.ga.estimator import GaEstimator, measure
from sonoshift.judges.ga.head_fit import fit_head


def evaluate_simulated(
    segmenter: str | Path, dataset: str | Path, *, split: str = "test", plane: str = "head", tta: bool = True,
) -> pd.DataFrame:
    """One row per head-plane frame of ``split`` (every domain): domain, ga_weeks, hc_mm, hc_label_mm and the GA
    errors in days (``ga_err_<formula>_days`` from the image, ``ga_err_<formula>_label_days`` from the map)."""
    from sonoshift.data.manifests import read_manifest

    root = Path(dataset)
    seg = load_segmenter(segmenter)
    est = GaEstimator(seg, 0.0, tta)  # the simulator's head is its anatomy: no outline convention to calibrate
    rows = [r for r in read_manifest(root / f"manifest_{split}.csv") if r.get("plane") == plane]
    if not rows:
        raise SonoshiftError(f"split {split!r} of {dataset} has no {plane!r} frame.")
    missing = [r["path"] for r in rows if not r.get("pixel_size_mm")]
    if missing:
        raise SonoshiftError(f"frame {missing[0]} has no pixel size (re-run `sonoshift simulate` and `prepare`).")
    frames = [read_gray(root / r["path"]) for r in rows]
    m = measure(est, frames, [float(r["pixel_size_mm"]) for r in rows], names=[r["path"] for r in rows])
    lut = np.array(seg.info.get("label_lut", list(range(256))), dtype=np.int64)
    hc_label = []
    for r in rows:
        lab = lut[read_labels(root / r["label_path"])] if r.get("label_path") else None
        fit = fit_head((lab == est.head_class).astype(np.float32), lab.shape) if lab is not None else None
        hc_label.append(fit.hc_px() * float(r["pixel_size_mm"]) if fit is not None else math.nan)
    m["domain"] = [r["domain"] for r in rows]
    m["ga_weeks"] = [float(r["ga_weeks"]) for r in rows]
    m["hc_label_mm"] = hc_label
    for name, fn in (("hadlock", hadlock_ga_from_hc), ("intergrowth", intergrowth_ga_weeks)):
        m[f"ga_err_{name}_days"] = (m[f"ga_{name}_weeks"] - m["ga_weeks"]) * 7
        m[f"ga_err_{name}_label_days"] = (np.array([fn(h) if np.isfinite(h) else math.nan for h in hc_label])
                                          - m["ga_weeks"]) * 7
    return m


def summarize_simulated(table: pd.DataFrame) -> pd.DataFrame:
    """Per domain: frames, head found rate, mean |GA error| (days) from the image and from the label map."""
    recs = []
    for dom, g in table.groupby("domain", sort=True):
        rec = {"domain": dom, "frames": len(g), "head_found_rate": float(g["head_found"].mean())}
        for name in ("hadlock", "intergrowth"):
            rec[f"{name}_abs_days"] = float(g[f"ga_err_{name}_days"].abs().mean())
            rec[f"{name}_label_abs_days"] = float(g[f"ga_err_{name}_label_days"].abs().mean())
        recs.append(rec)
    return pd.DataFrame(recs)
