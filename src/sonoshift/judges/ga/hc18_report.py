"""Build a calibrated GA estimator from an HC18 head segmenter and report it on HC18's held-out subjects.

Report (the HC18 paper's measures): absolute HC error in mm (mean, median, 95th percentile, std), the share of
images with no head found, and GA error in days per trimester (mean +- std of the absolute difference, and the
signed mean) for Hadlock and for INTERGROWTH-21st, each against the GA its own formula gives for the official HC
(so on HC18 a GA error is an HC error in days). Trimesters by the reference Hadlock GA: first < 14 weeks,
second 14-28, third >= 28.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.atomic import atomic_dir
from sonoshift.biometry.intergrowth import ga_weeks_from_hc as intergrowth_ga_weeks
from sonoshift.downstream.hc18 import HEAD_CLASSES, load_hc18_table, split_subjects
from sonoshift.io.labels import read_labels
from sonoshift.downstream.segmenter import Segmenter, load_segmenter, save_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc as hadlock_ga_from_hc
from sonoshift.judges.ga.estimator import KEY, GaEstimator, canvas_pad, is_amodal, load_ga_estimator, measure_files
from sonoshift.judges.ga.hc18_figure import worst_cases_png
from sonoshift.judges.ga.head_fit import calibrate_offset
from sonoshift.judges.ga.polar_refiner import POLAR_KEY, PolarRefiner

TRIMESTERS = (("first", 0.0, 14.0), ("second", 14.0, 28.0), ("third", 28.0, 99.0))
# a refined HC more than this factor above the first stage's is not taken (GaEstimator.refine_max_growth): the
# factor chosen on the 5-fold CV's out-of-fold HCs (bench/ga_calibration_cv.py: 1.06 on every fold's complement)
REFINE_MAX_GROWTH = 1.06
# below this IoU of the refiner's map with its fitted ellipse the crop search runs (GaEstimator.rescue_iou): chosen
# on the 5-fold CV (docs/judges.md, session 9: 2.60 -> 2.36 mm mean; 0.87-0.92 chosen per fold on the other four)
RESCUE_IOU = 0.9
# heads whose first-stage contour has more of its points at the image border go to the border estimator (the 99th
# percentile over uncut training heads of two CV folds; docs/judges.md, session 29)
BORDER_THRESHOLD = 0.07
# ... and so do the heads whose first-stage ellipse comes within this many semi-minor axes of the border when the
# border estimator's own first stage finds them at it (GaEstimator.border_gap): declared in session 30 (-9.5 % on cut
# heads, just short of its 10 %), replicated on session 32's independently trained networks (-11.4 %, uncut +0.005
# mm; docs/judges.md, sessions 30 and 32), the default since session 32 wherever there is a border estimator
BORDER_GAP = 0.2


def border_gap_or_default(border_gap: float | None, has_border: bool) -> float:
    """``border_gap``, or for None ``BORDER_GAP`` with a border estimator and 0 without one."""
    return (BORDER_GAP if has_border else 0.0) if border_gap is None else float(border_gap)


def heldout_rows(seg: Segmenter, data_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows) of HC18 for this segmenter: its stored ``val_files``, else the seeded
    subject split of its config."""
    rows = load_hc18_table(data_dir)
    val_files = seg.info.get("val_files")
    if val_files:
        is_val = rows["filename"].isin(set(val_files)).to_numpy()
    else:
        c = seg.config
        is_val = split_subjects(rows["subject"], float(c.get("val_fraction", 0.2)), int(c.get("split_seed", 0)),
                                int(c.get("folds", 0)), int(c.get("fold", 0)))
    return rows[~is_val].reset_index(drop=True), rows[is_val].reset_index(drop=True)


def build_estimator(
    segmenter: str | Path | Sequence[str | Path], data_dir: str | Path, out: str | Path, *,
    tta: bool | None = None, refine_max_growth: float = REFINE_MAX_GROWTH, refine_tta: bool = False,
    rescue_iou: float = RESCUE_IOU, polar_tta: bool | None = None, border: str | Path | None = None,
    border_threshold: float = BORDER_THRESHOLD, border_gap: float | None = None,
    scale_check: str | Path | None = None, second_opinion: str | Path | None = None,
    tie_breaker: str | Path | None = None,
) -> GaEstimator:
    """Calibrate the ellipse offset on the segmenter's HC18 *training* masks, evaluate on its held-out images,
    and write the estimator folder ``out`` (segmenter weights + ``info.ga_estimator`` + ``hc18_validation.csv``).
    Several segmenters make an ensemble (their head maps averaged); they must share one held-out split, and
    every one after the first is stored in a sub-folder ``member_<i>``. Crop refiners (segmenters trained with
    ``head_crops``) among them become the estimator's second stage, stored as ``refiner_<i>``; a refined HC more
    than ``refine_max_growth`` x the first-stage HC is not taken (``GaEstimator``). ``tta`` (first-stage flip
    averaging) None: on for a one-stage estimator, off when refiners follow (the first stage then only places the
    crop); ``refine_tta``: the refiners' (off by default). Flip averaging in either stage did not lower the
    5-fold CV HC error of the two-stage estimator (docs/judges.md, session 8) and costs a network pass each.
    ``rescue_iou``: where the refined map's IoU with its ellipse is lower, the crop search (crop_search.py) runs
    (0: never). Polar refiners (``head_polar``) take the last look together (their logits averaged; stored as
    ``polar_<i>``), with the first one's rounds and blend; ``polar_tta`` None: its flip averaging setting.
    ``border``: a GA estimator folder built from networks trained on heads cut by the image border (``cut_heads``),
    held out on the same images; it measures the heads whose first-stage contour has more than ``border_threshold``
    of its points at the image border (``GaEstimator.border``) and is stored in the sub-folder ``border``;
    ``border_gap`` > 0: also the heads near the border that its own first stage finds at it (``GaEstimator``; None:
    ``BORDER_GAP`` with a border estimator, 0 without). ``scale_check``: a wide-view polar refiner
    (``configs/cpu/hc18_head_polar_wide.yaml``, held out on the same images, stored as ``scale_check``) that checks
    every measurement and replaces the unstable ones (scale_check.py). ``second_opinion``: another whole-frame
    segmenter of the first stage's recipe (another training seed), held out on the same images, stored as
    ``second_opinion``: where the head it places measures much smaller and the polar refiner is surer of that
    outline, that measurement is taken (second_opinion.py). ``tie_breaker``: a third whole-frame segmenter of that
    recipe (needs ``second_opinion``), stored as ``tie_breaker``: where the first two disagree, the median of the
    three measurements is taken instead (tie_breaker.py)."""
    if tie_breaker is not None and second_opinion is None:
        raise SonoshiftError("a tie-breaker (--tie-breaker) breaks ties between the first stage and a second opinion: "
                             "give --second-opinion too.")
    border_gap = border_gap_or_default(border_gap, border is not None)
    if border_gap > 0 and border is None:
        raise SonoshiftError("a border gap (--border-gap) needs a border estimator (--border) to send heads to.")
    paths = [segmenter] if isinstance(segmenter, (str, Path)) else list(segmenter)
    loaded = [load_segmenter(p) for p in paths]
    for p, s in zip(paths, loaded):
        if POLAR_KEY not in s.info and tuple(s.classes) != HEAD_CLASSES:  # a polar refiner's one class: the outline
            raise SonoshiftError(f"{p} is not an HC18 head segmenter (its classes are {', '.join(s.classes)}, not "
                                 f"{', '.join(HEAD_CLASSES)}): train one with `sonoshift segment train-hc18`.")
    # polar refiners (trained with head_polar) take the last look, together
    is_pol = [POLAR_KEY in s.info for s in loaded]
    polars = [s for s, q in zip(loaded, is_pol) if q]
    paths = [p for p, q in zip(paths, is_pol) if not q]
    loaded = [s for s, q in zip(loaded, is_pol) if not q]
    # crop refiners (trained with head_crops > 0) take the second look; every other segmenter is a first-stage member
    is_ref = [bool(s.info.get("head_crop")) for s in loaded]
    segs = [s for s, r in zip(loaded, is_ref) if not r]
    refiners = [s for s, r in zip(loaded, is_ref) if r]
    if not segs:
        raise SonoshiftError("a GA estimator needs at least one whole-frame segmenter; every one given is a crop "
                             "refiner (trained with head_crops > 0).")
    first = paths[is_ref.index(False)]
    for group, what in ((segs, "whole-frame segmenters"), (refiners, "crop refiners")):
        if len({(is_amodal(g), canvas_pad(g)) for g in group}) > 1:
            raise SonoshiftError(f"the {what} of one estimator must all be amodal (on one canvas) or none: their "
                                 "maps are averaged.")
    train, val = heldout_rows(segs[0], data_dir)
    for p, other in zip(paths, loaded):
        if other is not segs[0] and set(heldout_rows(other, data_dir)[1]["filename"]) != set(val["filename"]):
            raise SonoshiftError(f"segmenter {p} was held out on other HC18 images than {first}: an ensemble "
                                 "needs one split (same val_fraction and split_seed).")
    seg = segs[0]
    masks = [read_labels(p) > 127 for p in train["mask_path"]]
    offset = calibrate_offset(masks, list(train["hc_mm"] / train["pixel_size_mm"]))
    margin = float(refiners[0].info["head_crop"]["margin"]) if refiners else 1.3
    tta = not refiners if tta is None else tta
    polar = (PolarRefiner.from_segmenters(polars, polar_tta),) if polars else ()
    if any(set(p.info.get("val_files", [])) != set(val["filename"]) for p in polars):
        raise SonoshiftError(f"a polar refiner was held out on other HC18 images than {first}: an estimator needs "
                             "one split (same val_fraction and split_seed).")
    border_est = None
    if border is not None:
        border_est = load_ga_estimator(border)
        if set(heldout_rows(border_est.segmenter, data_dir)[1]["filename"]) != set(val["filename"]):
            raise SonoshiftError(f"the border estimator {border} was held out on other HC18 images than {first}: "
                                 "an estimator needs one split (same val_fraction and split_seed, or fold).")
    check = _scale_check(scale_check, val)
    second = _other_first_stage(second_opinion, [seg], val, data_dir, "second opinion")
    third = _other_first_stage(tie_breaker, [seg, second], val, data_dir, "tie-breaker")
    est = GaEstimator(seg, offset, tta, tuple(segs[1:]), tuple(refiners), margin, refine_max_growth, refine_tta,
                      rescue_iou, polar=polar, border=border_est, border_threshold=border_threshold,
                      border_gap=border_gap, scale_check=check, second=second, third=third)
    table = evaluate_rows(est, val) if len(val) else pd.DataFrame()
    info = dict(seg.info)
    member_names = [f"member_{i}" for i in range(1, len(segs))]
    refiner_names = [f"refiner_{i}" for i in range(len(refiners))]
    polar_names = [f"polar_{i}" for i in range(len(polars))]
    info[KEY] = {"offset_px": offset, "tta": tta, "refine_tta": refine_tta, "calibrated_on": int(len(train)),
                 "formulas": ["hadlock_1984", "intergrowth21_2016"], "members": member_names, "polar": polar_names,
                 "polar_tta": polar[0].tta if polar else None,
                 "member_image_sizes": [s.image_size for s in segs], "refiners": refiner_names,
                 "crop_margin": margin, "rescue_iou": rescue_iou, "rescue_scales": list(est.rescue_scales),
                 "validation": summarize(table) if len(table) else {}}
    if math.isfinite(refine_max_growth):
        info[KEY]["refine_max_growth"] = refine_max_growth
    if border_est is not None:
        info[KEY].update(border="border", border_threshold=float(border_threshold), border_gap=float(border_gap))
    if check is not None:
        info[KEY]["scale_check"] = "scale_check"
    if second is not None:
        info[KEY].update(second_opinion="second_opinion", second_tau=est.second_tau)
    if third is not None:
        info[KEY]["tie_breaker"] = "tie_breaker"
    out_seg = Segmenter(seg.model, seg.classes, seg.image_size, seg.config, info)
    with atomic_dir(out) as tmp:
        save_segmenter(out_seg, tmp)
        for name, member in [*zip(member_names, segs[1:]), *zip(refiner_names, refiners), *zip(polar_names, polars)]:
            save_segmenter(member, tmp / name)
        if border is not None:
            shutil.copytree(border, tmp / "border")
        if check is not None:
            save_segmenter(check.segmenter, tmp / "scale_check")
        if second is not None:
            save_segmenter(second, tmp / "second_opinion")
        if third is not None:
            save_segmenter(third, tmp / "tie_breaker")
        if len(table):
            (tmp / "hc18_validation.csv").write_text(table.to_csv(index=False), encoding="utf-8")
    return dataclasses.replace(est, segmenter=out_seg)


def _scale_check(path: str | Path | None, val: pd.DataFrame) -> PolarRefiner | None:
    """The wide-view polar refiner at ``path`` (None: none), refused unless it is a polar refiner held out on the
    estimator's held-out images ``val``."""
    if path is None:
        return None
    seg = load_segmenter(path)
    if POLAR_KEY not in seg.info:
        raise SonoshiftError(f"{path} is not a polar refiner (trained with head_polar, e.g. "
                             "configs/cpu/hc18_head_polar_wide.yaml): a scale check needs one.")
    if set(seg.info.get("val_files", [])) != set(val["filename"]):
        raise SonoshiftError(f"the scale check {path} was held out on other HC18 images than the estimator's first "
                             "stage: an estimator needs one split (same val_fraction and split_seed, or fold).")
    return PolarRefiner.from_segmenter(seg)


def _other_first_stage(path: str | Path | None, before: Sequence[Segmenter], val: pd.DataFrame,
                       data_dir: str | Path, role: str) -> Segmenter | None:
    """Another first-stage network at ``path`` (None: none) in the ``role`` "second opinion" or "tie-breaker",
    refused unless it is a whole-frame segmenter like the first stage ``before[0]`` (no crop or polar refiner; the
    same canvas), held out on the estimator's held-out images ``val``, with weights of its own (none of
    ``before``'s: a copy can never disagree)."""
    if path is None:
        return None
    seg, first = load_segmenter(path), before[0]
    if seg.info.get("head_crop") or POLAR_KEY in seg.info:
        raise SonoshiftError(f"{path} is a refiner, not a whole-frame segmenter: a {role} is another first "
                             "stage (configs/cpu/hc18_head_ga.yaml with another train.seed).")
    if (is_amodal(seg), canvas_pad(seg)) != (is_amodal(first), canvas_pad(first)):
        raise SonoshiftError(f"the {role} {path} sees frames on another canvas than the first stage "
                             "(amodal / canvas_pad): train it with the first stage's config.")
    if set(heldout_rows(seg, data_dir)[1]["filename"]) != set(val["filename"]):
        raise SonoshiftError(f"the {role} {path} was held out on other HC18 images than the estimator's "
                             "first stage: an estimator needs one split (same val_fraction and split_seed, or fold).")
    mine = seg.model.state_dict()
    for other, what in zip(before, ("the first stage's", "the second opinion's")):
        theirs = other.model.state_dict()
        if mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine):
            raise SonoshiftError(f"the {role} {path} has {what} own weights: it can never disagree; "
                                 "train the first stage's config with another train.seed.")
    return seg


def evaluate_rows(est: GaEstimator, rows: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """Per HC18 row: measured HC/GA next to the official HC and the GA each formula gives for it."""
    m = measure_files(est, list(rows["image_path"]), list(rows["pixel_size_mm"]), batch_size,
                      names=list(rows["filename"]))
    m["hc_true_mm"] = rows["hc_mm"].to_numpy()
    m["hc_abs_err_mm"] = (m["hc_mm"] - m["hc_true_mm"]).abs()
    m["ga_true_hadlock_weeks"] = hadlock_ga_from_hc(m["hc_true_mm"].to_numpy())
    m["ga_true_intergrowth_weeks"] = intergrowth_ga_weeks(m["hc_true_mm"].to_numpy())
    m["ga_err_hadlock_days"] = (m["ga_hadlock_weeks"] - m["ga_true_hadlock_weeks"]) * 7
    m["ga_err_intergrowth_days"] = (m["ga_intergrowth_weeks"] - m["ga_true_intergrowth_weeks"]) * 7
    m["trimester"] = [next(n for n, lo, hi in TRIMESTERS if lo <= g < hi) for g in m["ga_true_hadlock_weeks"]]
    return m


def summarize(table: pd.DataFrame) -> dict:
    """HC error (mm) statistics, no-head rate and GA error (days) per trimester and formula."""
    found = table[table["head_found"]]
    err = found["hc_abs_err_mm"]
    out = {
        "images": int(len(table)),
        "no_head_found": int((~table["head_found"]).sum()),
        "no_head_found_rate": float((~table["head_found"]).mean()),
        "hc_abs_err_mm_mean": float(err.mean()),
        "hc_abs_err_mm_median": float(err.median()),
        "hc_abs_err_mm_p95": float(np.percentile(err, 95)) if len(err) else math.nan,
        "hc_abs_err_mm_std": float(err.std(ddof=0)),
        "hc_signed_err_mm_mean": float((found["hc_mm"] - found["hc_true_mm"]).mean()),
    }
    for formula in ("hadlock", "intergrowth"):
        for name, _, _ in TRIMESTERS:
            d = found.loc[found["trimester"] == name, f"ga_err_{formula}_days"]
            out[f"ga_{formula}_{name}_n"] = int(len(d))
            out[f"ga_{formula}_{name}_abs_days_mean"] = float(d.abs().mean()) if len(d) else math.nan
            out[f"ga_{formula}_{name}_abs_days_std"] = float(d.abs().std(ddof=0)) if len(d) else math.nan
            out[f"ga_{formula}_{name}_signed_days_mean"] = float(d.mean()) if len(d) else math.nan
    return out


def report_table(summary: dict) -> pd.DataFrame:
    """GA error per formula and trimester as a small table (n, |error| mean +- std, signed mean; days)."""
    recs = []
    for formula in ("hadlock", "intergrowth"):
        for name, _, _ in TRIMESTERS:
            k = f"ga_{formula}_{name}"
            recs.append({"formula": formula, "trimester": name, "n": summary[f"{k}_n"],
                         "abs_days_mean": summary[f"{k}_abs_days_mean"], "abs_days_std": summary[f"{k}_abs_days_std"],
                         "signed_days_mean": summary[f"{k}_signed_days_mean"]})
    return pd.DataFrame(recs)


def evaluate_estimator(est: GaEstimator, data_dir: str | Path, out: str | Path) -> dict:
    """Evaluate on the estimator's held-out HC18 images; writes per_image.csv, summary.csv (one row), ga_error.csv
    (GA error per formula and trimester) and worst_cases.png (the 8 largest errors, reference vs estimate)."""
    _, val = heldout_rows(est.segmenter, data_dir)
    if val.empty:
        raise SonoshiftError("this estimator's segmenter has no held-out HC18 images to evaluate on.")
    table = evaluate_rows(est, val)
    s = summarize(table)
    with atomic_dir(out) as tmp:
        (tmp / "per_image.csv").write_text(table.to_csv(index=False), encoding="utf-8")
        (tmp / "summary.csv").write_text(pd.DataFrame([s]).to_csv(index=False), encoding="utf-8")
        (tmp / "ga_error.csv").write_text(report_table(s).to_csv(index=False), encoding="utf-8")
        worst_cases_png(table, val, tmp / "worst_cases.png")
    return s
