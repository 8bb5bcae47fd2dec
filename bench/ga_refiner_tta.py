"""Test-time variants of the GA estimator's crop refiner, on the held-out HC18 images of one or more estimators
(several: e.g. the fold estimators of a `ga cv-hc18` folder, pooled, so variants are chosen without the held-out
split of the default estimator). The first stage is measured once; the refiner then looks again at crops with
other margins (side = margin x the first ellipse's long axis), with the crop centre moved by 5 % of the long
axis, with and without flip averaging, and the HCs of several looks are averaged.

    python bench/ga_refiner_tta.py --estimator EST [--estimator EST ...] [--out hcs.csv] [--threads 1]
    python bench/ga_refiner_tta.py --cv runs/ga_cv5        # every fold_<k>/estimator of a CV folder

Prints per variant: HC abs error mean / median / 95th percentile and signed mean (mm), images pooled.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.errors import exit_on_error
from sonoshift.io.images import read_gray
from sonoshift.judges.ga.estimator import head_probabilities, load_ga_estimator, refine_fits
from sonoshift.judges.ga.hc18_report import heldout_rows
from sonoshift.judges.ga.head_fit import HeadFit, fit_head

MARGINS = (1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.45)
SHIFTS = ((0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05))


def shifted(fits: list[HeadFit], dx: float, dy: float) -> list[HeadFit]:
    """The fits with their centres moved by (dx, dy) x the long semi-axis."""
    return [HeadFit(dataclasses.replace(f.ellipse, cx=f.ellipse.cx + dx * f.ellipse.a,
                                        cy=f.ellipse.cy + dy * f.ellipse.a)) if f.found else f for f in fits]


def hcs(path: str, data: str) -> pd.DataFrame:
    """Per held-out image: true HC, first-stage HC and the refined HC for every margin / shift, flip on and off."""
    est = load_ga_estimator(path)
    if not est.refiners:
        raise SystemExit(f"{path} has no crop refiner.")
    _, val = heldout_rows(est.segmenter, data)
    frames = [read_gray(p) for p in val["image_path"]]
    px = val["pixel_size_mm"].to_numpy()
    first = [fit_head(p, f.shape) for p, f in zip(head_probabilities(est, frames), frames)]
    rec = {"estimator": path, "name": val["filename"], "hc_true": val["hc_mm"],
           "first": np.array([f.hc_px(est.offset_px) for f in first]) * px}
    for tta in (True, False):
        e = dataclasses.replace(est, refine_tta=tta)  # refine_fits reads refine_tta (the first stage is fixed above)
        tag = "flip" if tta else "noflip"
        for m in MARGINS:
            r = refine_fits(dataclasses.replace(e, crop_margin=m), frames, first)
            rec[f"{tag} m{m:.2f}"] = np.array([f.hc_px(est.offset_px) for f in r]) * px
        for dx, dy in SHIFTS:
            r = refine_fits(e, frames, shifted(first, dx, dy))
            rec[f"{tag} s{dx:+.2f}{dy:+.2f}"] = np.array([f.hc_px(est.offset_px) for f in r]) * px
    return pd.DataFrame(rec)


def variants(t: pd.DataFrame, default_margin: float = 1.3) -> dict[str, pd.Series]:
    out = {"first stage only": t["first"]}
    for tag in ("flip", "noflip"):
        ms = [f"{tag} m{m:.2f}" for m in MARGINS]
        ss = [f"{tag} s{dx:+.2f}{dy:+.2f}" for dx, dy in SHIFTS]
        c = f"{tag} m{default_margin:.2f}"
        out |= {c: t[c],
                f"{tag} mean m1.25/1.35": t[[f"{tag} m1.25", f"{tag} m1.35"]].mean(axis=1),
                f"{tag} mean m1.2/1.3/1.4": t[[f"{tag} m1.20", f"{tag} m1.30", f"{tag} m1.40"]].mean(axis=1),
                f"{tag} mean of 7 margins": t[ms].mean(axis=1),
                f"{tag} mean centre + 4 shifts": t[[c, *ss]].mean(axis=1),
                f"{tag} mean of margins + shifts": t[ms + ss].mean(axis=1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", action="append", default=[])
    ap.add_argument("--cv", help="a `ga cv-hc18` folder: use its fold_<k>/estimator folders")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"))
    ap.add_argument("--out", help="CSV of the per-image HCs")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    paths = list(a.estimator) + (sorted(str(p) for p in Path(a.cv).glob("fold_*/estimator")) if a.cv else [])
    if not paths:
        raise SystemExit("give --estimator EST or --cv FOLDER")
    t = pd.concat([hcs(p, a.data) for p in paths], ignore_index=True)
    if a.out:
        t.to_csv(a.out, index=False)
    print(f"{len(t)} held-out images from {len(paths)} estimator(s); HC abs error (mm) per refiner variant")
    for name, v in variants(t).items():
        e = (v - t["hc_true"]).abs()
        print(f"{name:34s} mean {e.mean():.3f}  median {e.median():.3f}  p95 {np.percentile(e.dropna(), 95):.2f}  "
              f"signed {(v - t['hc_true']).mean():+.2f}")


if __name__ == "__main__":
    exit_on_error(main)
