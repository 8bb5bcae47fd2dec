"""Subject-wise k-fold cross-validation of the HC18 GA estimator: every HC18 image is measured once, by an
estimator whose segmenters never saw its subject.

For each fold: train every member config on the other folds' subjects (``Hc18Config.folds`` / ``fold``), join
them with ``build_estimator`` (ellipse offset calibrated on that fold's training masks), measure the fold's
held-out images. Each finished fold leaves ``fold_<k>/per_image.csv`` and its members on disk, so a rerun skips
what is done. The pooled table of all folds gives the summary (HC error mean / median / 95th percentile over
all images, no-head rate, GA error per trimester), per-fold means, and ``worst_cases.png``.

Crop refiner configs (``head_crops`` > 0) among the members make the fold's estimator two-stage (whole-frame
members, then the refiner), so the whole estimator is cross-validated. The same fold estimator is then also
measured without its refiners (``fold_<k>/per_image_first_stage.csv``, pooled ``per_image_first_stage.csv``):
the refiner's gain on the same images, from the same first-stage networks.

``border_configs`` (heads cut by the image border, border_cut.py): per fold those members are trained too
(``fold_<k>/border_segmenter_<j>``, typically the first-stage and crop-refiner configs with ``cut_heads``), joined
with the fold's polar refiners into a border estimator (``fold_<k>/border_estimator``), and the fold's estimator
sends it the heads whose first-stage contour has more than ``border_threshold`` of its points at the border: the
recipe of ``ga build --border`` cross-validated as a whole. ``fold_<k>/recipe.json`` records the border settings a
fold was measured with; a rerun with other ones is refused. The first-stage and without-polar tables measure the
main estimator's stages without the border route.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.downstream.hc18 import Hc18Config, load_hc18_table, train_hc18_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import load_ga_estimator
from sonoshift.judges.ga.hc18_figure import worst_cases_png
from sonoshift.judges.ga.hc18_report import (
    BORDER_THRESHOLD,
    border_gap_or_default,
    build_estimator,
    evaluate_rows,
    heldout_rows,
    report_table,
    summarize,
)
from sonoshift.runs import read_json


def fold_configs(configs: Sequence[Hc18Config], folds: int, fold: int) -> list[Hc18Config]:
    """The member configs for one fold: same data and split seed (the first config's), fold set."""
    if folds < 2:
        raise SonoshiftError(f"cross-validation needs at least 2 folds, got {folds}.")
    first = configs[0]
    return [dataclasses.replace(c, data_dir=first.data_dir, split_seed=first.split_seed, max_images=first.max_images,
                                folds=folds, fold=fold) for c in configs]


def cross_validate(
    configs: Sequence[Hc18Config], out: str | Path, folds: int = 5, tta: bool | None = None, progress: bool = True,
    refine_tta: bool = False, polar_tta: bool | None = None, border_configs: Sequence[Hc18Config] = (),
    border_threshold: float = BORDER_THRESHOLD, border_gap: float | None = None,
    scale_check_config: Hc18Config | None = None, second_opinion: bool = False, tie_breaker: bool = False,
) -> dict:
    """Run (or resume) the k-fold CV of the ensemble of ``configs`` into ``out``; returns the pooled summary
    (``summarize`` of all folds' images) plus ``folds`` and per-fold ``fold_hc_abs_err_mm_mean``. Writes
    ``per_image.csv`` (with a ``fold`` column), ``summary.csv``, ``ga_error.csv``, ``folds.csv`` and
    ``worst_cases.png`` into ``out``. ``scale_check_config``: a wide-view polar refiner trained per fold
    (``fold_<k>/scale_check_0``, ``ga build --scale-check``); the same estimators are also measured without it
    (``per_image_without_scale_check.csv``). ``second_opinion``: a second first stage trained per fold with the
    first config and the next training seed (``fold_<k>/second_opinion_0``, ``ga build --second-opinion``); the
    same estimators are also measured without it (``per_image_without_second_opinion.csv``). ``tie_breaker``
    (needs ``second_opinion``): a third first stage, the training seed after the second's (``fold_<k>/tie_breaker_0``,
    ``ga build --tie-breaker``); measured without it too (``per_image_without_tie_breaker.csv``: the second opinion's
    own rule)."""
    if not configs:
        raise SonoshiftError("cross-validation needs at least one segmenter config.")
    if tie_breaker and not second_opinion:
        raise SonoshiftError("a tie-breaker breaks ties between the first stage and a second opinion: give "
                             "--second-opinion too.")
    out = Path(out)
    border_gap = border_gap_or_default(border_gap, bool(border_configs))
    if border_gap > 0 and not border_configs:
        raise SonoshiftError("a border gap needs border configs (--border-config) to build a border estimator.")
    two_stage = any(c.head_crops or c.head_polar for c in configs)
    has_polar = any(c.head_polar for c in configs)
    tables, first_tables, no_polar_tables = [], [], []
    # optional stages, each also measured without (its name, the estimator field that drops it)
    optional = [(name, field) for name, field, on in (("scale_check", "scale_check", scale_check_config is not None),
                                                       ("second_opinion", "second", second_opinion),
                                                       ("tie_breaker", "third", tie_breaker)) if on]
    without_tables: dict[str, list[pd.DataFrame]] = {name: [] for name, _ in optional}
    for k in range(folds):
        fdir = out / f"fold_{k}"
        done = fdir / "per_image.csv"
        recipe = _recipe(fdir, border_configs, border_threshold, border_gap, scale_check_config is not None,
                         second_opinion, tie_breaker)
        if not done.is_file():
            members = _trained(fold_configs(configs, folds, k), fdir, "segmenter", progress)
            border = None
            if border_configs:
                polars = [m for m, c in zip(members, configs) if c.head_polar]
                cut = _trained(fold_configs([configs[0], *border_configs], folds, k)[1:], fdir, "border_segmenter",
                               progress)
                border = fdir / "border_estimator"
                build_estimator([*cut, *polars], configs[0].data_dir, border, tta=tta, refine_tta=refine_tta,
                                polar_tta=polar_tta)
            check = None
            if scale_check_config is not None:
                check = _trained(fold_configs([configs[0], scale_check_config], folds, k)[1:], fdir, "scale_check",
                                 progress)[0]
            second = _reseeded(configs, folds, k, fdir, "second_opinion", 1, progress) if second_opinion else None
            third = _reseeded(configs, folds, k, fdir, "tie_breaker", 2, progress) if tie_breaker else None
            est = build_estimator(members, configs[0].data_dir, fdir / "estimator", tta=tta, refine_tta=refine_tta,
                                  polar_tta=polar_tta, border=border, border_threshold=border_threshold,
                                  border_gap=border_gap, scale_check=check, second_opinion=second,
                                  tie_breaker=third)
            atomic_write_text(fdir / "recipe.json", json.dumps(recipe))
            _, val = heldout_rows(est.segmenter, configs[0].data_dir)
            atomic_write_text(done, evaluate_rows(est, val).assign(fold=k).to_csv(index=False))
        tables.append(pd.read_csv(done))
        if two_stage:
            first_tables.append(_first_stage_table(fdir, configs[0].data_dir, k, tta is not False))
        if has_polar:
            no_polar_tables.append(_stage_table(fdir, configs[0].data_dir, k, "per_image_without_polar.csv", polar=(),
                                                border=None, scale_check=None, second=None))
        for name, field in optional:
            without_tables[name].append(_stage_table(fdir, configs[0].data_dir, k, f"per_image_without_{name}.csv",
                                                     **{field: None}))
    table = _pooled(tables)
    s = summarize(table)
    per_fold = table.groupby("fold")["hc_abs_err_mm"].agg(["count", "mean", "median"]).reset_index()
    if has_polar:  # how far each fold's (first) polar network over-fitted: outline rows off, training vs held-out
        errors = [_polar_strip_errors(out / f"fold_{k}", configs) for k in per_fold["fold"]]
        for part in ("train", "heldout"):
            per_fold[f"polar_{part}_row_error"] = [e.get(part, {}).get("row_error", np.nan) for e in errors]
    s["folds"] = folds
    s["fold_hc_abs_err_mm_mean"] = [float(v) for v in per_fold["mean"]]
    if two_stage:
        first = _pooled(first_tables)
        fs = summarize(first)
        for key in ("hc_abs_err_mm_mean", "hc_abs_err_mm_median", "hc_abs_err_mm_p95", "no_head_found"):
            s[f"first_stage_{key}"] = fs[key]
        s["first_stage_fold_hc_abs_err_mm_mean"] = [float(v) for v in first.groupby("fold")["hc_abs_err_mm"].mean()]
        per_fold["first_stage_mean"] = s["first_stage_fold_hc_abs_err_mm_mean"]
        atomic_write_text(out / "per_image_first_stage.csv", first.to_csv(index=False))
    if has_polar:
        np_table = _pooled(no_polar_tables)
        for key in ("hc_abs_err_mm_mean", "hc_abs_err_mm_median", "hc_abs_err_mm_p95", "no_head_found"):
            s[f"without_polar_{key}"] = summarize(np_table)[key]
        atomic_write_text(out / "per_image_without_polar.csv", np_table.to_csv(index=False))
    for name, parts in without_tables.items():
        nc_table = _pooled(parts)
        for key in ("hc_abs_err_mm_mean", "hc_abs_err_mm_median", "hc_abs_err_mm_p95", "no_head_found"):
            s[f"without_{name}_{key}"] = summarize(nc_table)[key]
        atomic_write_text(out / f"per_image_without_{name}.csv", nc_table.to_csv(index=False))
    atomic_write_text(out / "per_image.csv", table.to_csv(index=False))
    atomic_write_text(out / "summary.csv", pd.DataFrame([{k: v for k, v in s.items() if np.isscalar(v)}]).to_csv(index=False))
    atomic_write_text(out / "ga_error.csv", report_table(s).to_csv(index=False))
    atomic_write_text(out / "folds.csv", per_fold.to_csv(index=False))
    worst_cases_png(table, load_hc18_table(configs[0].data_dir), out / "worst_cases.png")
    return s


def _trained(cfgs: Sequence[Hc18Config], fdir: Path, stem: str, progress: bool) -> list[Path]:
    """``fdir/<stem>_<j>`` for each config, trained unless it is there already."""
    out = []
    for j, cfg in enumerate(cfgs):
        mdir = fdir / f"{stem}_{j}"
        if not (mdir / "segmenter.json").is_file():
            train_hc18_segmenter(cfg, mdir, progress=progress)
        out.append(mdir)
    return out


def _reseeded(configs: Sequence[Hc18Config], folds: int, k: int, fdir: Path, stem: str, step: int,
              progress: bool) -> Path:
    """``fdir/<stem>_0``: the first config's first stage for fold ``k`` with its training seed + ``step``."""
    first = fold_configs(configs, folds, k)[0]
    other = dataclasses.replace(first, train=dataclasses.replace(first.train, seed=first.train.seed + step))
    return _trained([other], fdir, stem, progress)[0]


def _recipe(fdir: Path, border_configs: Sequence[Hc18Config], border_threshold: float, border_gap: float,
            scale_check: bool = False, second_opinion: bool = False, tie_breaker: bool = False) -> dict:
    """The border, scale-check, second-opinion and tie-breaker settings of this run; a fold already measured with
    other ones (``recipe.json``; none: measured without a border estimator; no gap, scale check, second opinion or
    tie-breaker recorded: before they existed, 0 / off) is an error, not silently reused."""
    recipe = {"border_members": len(border_configs),
              "border_threshold": float(border_threshold) if border_configs else None,
              "border_gap": float(border_gap), "scale_check": bool(scale_check),
              "second_opinion": bool(second_opinion), "tie_breaker": bool(tie_breaker)}
    if (fdir / "per_image.csv").is_file():
        before = read_json(fdir / "recipe.json") if (fdir / "recipe.json").is_file() else {
            "border_members": 0, "border_threshold": None}
        before = {"border_gap": 0.0, "scale_check": False, "second_opinion": False, "tie_breaker": False} | before
        if before != recipe:
            raise SonoshiftError(f"{fdir} was cross-validated with {_said(before)}, not {_said(recipe)}; give another "
                                 "output folder.")
    return recipe


def _said(recipe: dict) -> str:
    """A recipe in words, for the refusal."""
    return (f"{recipe['border_members']} border member(s) (threshold {recipe['border_threshold']}, gap "
            f"{recipe['border_gap']}, scale check {'on' if recipe['scale_check'] else 'off'}, second opinion "
            f"{'on' if recipe['second_opinion'] else 'off'}, tie-breaker {'on' if recipe['tie_breaker'] else 'off'})")


def _polar_strip_errors(fdir: Path, configs: Sequence[Hc18Config]) -> dict:
    """The first polar member's ``info.strip_validation`` (empty for a network trained before it was recorded)."""
    j = next(i for i, c in enumerate(configs) if c.head_polar)
    return read_json(fdir / f"segmenter_{j}" / "segmenter.json").get("info", {}).get("strip_validation", {})


def _pooled(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    table = pd.concat(tables, ignore_index=True)
    table["head_found"] = table["head_found"].astype(bool)
    return table


def _first_stage_table(fdir: Path, data_dir: str | Path, fold: int, tta: bool = True) -> pd.DataFrame:
    """The fold's estimator measured without its crop and polar refiners, as a one-stage estimator would run
    (flip averaging ``tta``; cached in ``per_image_first_stage.csv``)."""
    return _stage_table(fdir, data_dir, fold, "per_image_first_stage.csv", refiners=(), polar=(), border=None,
                        scale_check=None, second=None, tta=tta)


def _stage_table(fdir: Path, data_dir: str | Path, fold: int, name: str, **without) -> pd.DataFrame:
    """The fold's estimator measured with the fields ``without`` replaced (stages dropped), cached in ``name``:
    the gain of the dropped stages on the same images, from the same networks."""
    done = fdir / name
    if not done.is_file():
        est = load_ga_estimator(fdir / "estimator")
        _, val = heldout_rows(est.segmenter, data_dir)
        table = evaluate_rows(dataclasses.replace(est, **without), val).assign(fold=fold)
        atomic_write_text(done, table.to_csv(index=False))
    return pd.read_csv(done)
