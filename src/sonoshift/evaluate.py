"""``sonoshift evaluate``: per-frame image metrics of a translation run in three reference modes.

Input: a translation run folder (docs/formats.md §3: ``run.json`` + ``outputs.csv`` + ``outputs/``). Each output
frame is compared with
  - ``target``: its paired target-domain frame (``target_path``; the paper's protocol),
  - ``source``: its own source frame (``source_path``; is the structure kept?),
  - ``gt``:     the simulator's ground truth in the target profile (``gt_path``; true accuracy), when present.
Output, written atomically into the run folder:
  - ``metrics.csv``: one row per (frame, reference mode) with every pair metric as a column, ``mask_used``,
    and the run's ``method`` / ``config`` so the file names its rows on its own;
  - ``metrics_dataset.csv``: distribution-level numbers per mode (FID, KID on the labelled extractor; pooled BC);
  - ``metrics.json``: what was computed and how (mask, CSS variant, MI form, LPIPS backbone, extractor label).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

import sonoshift
from sonoshift.config import PosInt, Range, Validated, to_dict
from sonoshift.errors import SonoshiftError
from sonoshift.io.images import read_gray
from sonoshift.metrics import REGISTRY
from sonoshift.metrics.fid import default_extractor, extract_features, fid_from_features, kid_from_features
from sonoshift.metrics.histogram import PooledHistogram, bc_from_counts
from sonoshift.metrics.lpips import LPIPS, load_lpips, lpips_distance
from sonoshift.metrics.suite import PAIR_METRICS, pair_metrics
from sonoshift.outputs import Action, Stamp, decide, file_digest, settings_key
from sonoshift.progress import track
from sonoshift.runs import open_run, read_json

MODES = ("target", "source", "gt")
MODE_COLUMN = {"target": "target_path", "source": "source_path", "gt": "gt_path"}
MODE_TEXT = {
    "target": "translated vs paired target frame (paper protocol)",
    "source": "translated vs its own source frame (structure kept)",
    "gt": "translated vs simulator ground truth (true accuracy)",
}

UNPAIRED_TARGET_TEXT = ("translated vs a target-domain frame of another patient (unpaired data: grey-level and "
                        "texture agreement, not structure)")


def dataset_paired(root: Path) -> bool | None:
    """The prepared dataset's ``paired`` flag (dataset.json): True when each source frame's target frame shows the
    same anatomy (the simulator), False when the pairs only join two domains' frames (real scanners); None when
    unknown (no dataset.json or no flag)."""
    try:
        flag = read_json(root / "dataset.json").get("paired")
    except SonoshiftError:
        return None
    return flag if isinstance(flag, bool) else None


ID_COLUMNS = ["method", "config", "reference", "output_path", "reference_path", "patient_id", "video_id",
              "frame_index", "mask_used"]  # fmt: skip


@dataclass(frozen=True)
class EvaluateConfig(Validated):
    """How ``evaluate`` scores a run."""

    modes: tuple[str, ...] = MODES  # reference modes to try; a mode with no reference files is skipped
    use_mask: bool = True  # score only inside the field-of-view mask (mask_path) when the run has one
    mi_bins: Annotated[int, Range(2)] = 64
    mi_normalized: bool = True  # 2 I / (H_a + H_b) in [0, 1]; False: bits
    css_variant: Literal["mean", "product"] = "mean"
    lpips: Literal["auto", "alex", "vgg", "none"] = "auto"  # auto: AlexNet when its weights are found, else skip
    lpips_weights: str | None = None  # folder with the weight files (then the torch hub cache is searched)
    distribution: bool = True  # FID / KID (labelled extractor) and pooled BC per mode
    feature_extractor: str | None = None  # plane classifier folder: FID / KID on its features (else random conv)
    batch_size: PosInt = 32


def verify_run_split(run_dir: Path, segmenter: str | Path | None = None) -> dict[str, Any] | None:
    """Leakage check at this read of a split: the split of the run's dataset (splits.json, its manifest) and the
    model's training split against it (sonoshift.leakage). Leakage that harmonize was allowed to accept (run.json
    "leakage") is returned, to be marked in the report; new leakage is an error."""
    from sonoshift.engine.checkpoint import read_model
    from sonoshift.leakage import check_model_split

    folder = open_run(run_dir)
    run, root = folder.info, folder.dataset_root
    split = run.get("split")
    if not split or not (root / "dataset.json").is_file():
        return run.get("leakage")
    state = None
    if segmenter is not None:  # the downstream segmenter is a trained model too
        try:
            info = json.loads((Path(segmenter) / "segmenter.json").read_text(encoding="utf-8")).get("info", {})
        except (OSError, ValueError, AttributeError):
            info = {}
        return check_model_split({"training_split": info.get("training_split")}, root, str(split),
                                 model=f"segmenter {segmenter}")
    if run.get("checkpoint") and Path(str(run["checkpoint"])).exists():
        state = read_model(run["checkpoint"]).state
    allowed = run.get("leakage")
    found = check_model_split(state, root, str(split), allow=bool(allowed), model=f"the model of run {run_dir}")
    return found or allowed


def _load_chunk(
    rows: list[dict[str, str]], column: str, run_dir: Path, root: Path, use_mask: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[bool]]:
    outs, refs, masks, used = [], [], [], []
    for r in rows:
        o_path, r_path = run_dir / r["output_path"], root / r[column]
        o, ref = read_gray(o_path), read_gray(r_path)
        if o.shape != ref.shape:
            raise SonoshiftError(f"output {o_path} is {o.shape[1]}x{o.shape[0]} but reference {r_path} is "
                                 f"{ref.shape[1]}x{ref.shape[0]}.")  # fmt: skip
        m = np.ones(o.shape, bool)
        has_mask = use_mask and bool(r.get("mask_path"))
        if has_mask:
            m_path = root / r["mask_path"]
            m = read_gray(m_path) > 127
            if m.shape != o.shape:
                raise SonoshiftError(f"mask {m_path} does not have the size of output {o_path}.")
        outs.append(o)
        refs.append(ref)
        masks.append(m)
        used.append(has_mask)
    a = torch.from_numpy(np.stack(outs)).float().div_(255).unsqueeze(1)
    b = torch.from_numpy(np.stack(refs)).float().div_(255).unsqueeze(1)
    mask = torch.from_numpy(np.stack(masks)).unsqueeze(1) if any(used) else None
    return a, b, mask, used


def _lpips_model(cfg: EvaluateConfig) -> tuple[LPIPS | None, str]:
    if cfg.lpips == "none":
        return None, "not computed (lpips=none)"
    net = "alex" if cfg.lpips == "auto" else cfg.lpips
    try:
        return load_lpips(net, cfg.lpips_weights), f"lpips_{net}"  # type: ignore[arg-type]
    except SonoshiftError as e:
        if cfg.lpips == "auto":
            return None, f"not computed: {e}"
        raise


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return repr(float(v)) if isinstance(v, float) else str(v)


EVALUATION = "evaluation"


@dataclass(frozen=True)
class Evaluated:
    """One evaluated run: its metrics.csv, whether an identical earlier evaluation was reused, and the
    downstream segmentation table when a segmenter was given (None when reused or not asked for)."""

    metrics: Path
    reused: bool
    segmentation: Any = None


def evaluation_key(run_dir: Path, cfg: EvaluateConfig, segmenter: str | Path | None = None) -> str:
    """What an evaluation of ``run_dir`` depends on: the run's outputs.csv and run.json, the config, the segmenter."""
    seg = None
    if segmenter is not None:
        seg_dir = Path(segmenter)
        seg = [str(seg_dir.resolve()), [[f.name, f.stat().st_size, f.stat().st_mtime_ns]
                                        for f in sorted(seg_dir.iterdir()) if f.is_file()] if seg_dir.is_dir() else None]
    files = {f: file_digest(run_dir / f) for f in ("outputs.csv", "run.json") if (run_dir / f).is_file()}
    return settings_key({"config": to_dict(cfg), "files": files, "segmenter": seg})


def claim_metrics(run_dir: Path, key: str, force: bool) -> Action:
    """The output policy (sonoshift.outputs) for the metrics files inside a run folder."""
    meta = run_dir / "metrics.json"
    if not meta.is_file():
        if (run_dir / "metrics.csv").exists():
            return decide(run_dir / "metrics.csv", EVALUATION, None, key, force, "run folder")
        return "create"
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    found = Stamp(EVALUATION, old.get("evaluation_key")) if isinstance(old, dict) and "sonoshift_version" in old else None
    if found is None:
        return decide(meta, EVALUATION, None, key, force, "run folder")
    if not force and found.key != key:
        raise SonoshiftError(f"run {run_dir} already holds metrics from other evaluate settings or outputs; pass "
                             "--force to replace them.")
    return decide(meta, EVALUATION, found, key, force, "run folder")


def evaluate_runs(
    run_dirs: list[str | Path],
    cfg: EvaluateConfig = EvaluateConfig(),
    *,
    segmenter: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
) -> list[Evaluated]:
    """Score every run of ``run_dirs`` (see :func:`evaluate_run`); with ``segmenter`` also write each run's
    segmentation.csv. All runs succeed or nothing is written. An earlier evaluation with the same settings and
    outputs is reused, one with others is refused unless ``force`` (sonoshift.outputs)."""
    from sonoshift.downstream.evaluate_seg import evaluate_segmentation
    from sonoshift.outputs import all_or_nothing

    _check_modes(cfg)  # settings that cannot run are said before any earlier metrics are looked at
    if segmenter is not None:
        from sonoshift.downstream.segmenter import load_segmenter

        load_segmenter(segmenter)  # one sentence when it is not a segmenter
    runs = [Path(r) for r in run_dirs]
    leaks = {r: verify_run_split(r) for r in runs}
    if segmenter is not None:
        for r in runs:
            verify_run_split(r, segmenter)
    plans = [(r, evaluation_key(r, cfg, segmenter)) for r in runs]
    actions = [claim_metrics(r, k, force) for r, k in plans]
    results: list[Evaluated] = []
    with all_or_nothing() as batch:
        for (run, key), action in zip(plans, actions):
            if action == "reuse":
                results.append(Evaluated(run / "metrics.csv", True))
                continue
            for name, text in _score(run, cfg, progress, key, leaks[run]).items():
                batch.path(run / name).write_text(text, encoding="utf-8")
            seg = None
            if segmenter is not None:
                seg = evaluate_segmentation(run, segmenter, progress=progress, batch=batch)
            results.append(Evaluated(run / "metrics.csv", False, seg))
    return results


def evaluate_run(
    run_dir: str | Path, cfg: EvaluateConfig = EvaluateConfig(), progress: bool = True, *, force: bool = False
) -> Path:
    """Score every output frame of the run folder ``run_dir`` in the configured reference modes.

    Writes ``metrics.csv``, ``metrics_dataset.csv`` and ``metrics.json`` into ``run_dir`` (together, atomically)
    and returns the path of ``metrics.csv``. Images are 8-bit PNGs scored as [0, 1] intensities. An earlier
    evaluation with the same settings is reused; other earlier metrics are replaced only with ``force``.
    """
    return evaluate_runs([run_dir], cfg, progress=progress, force=force)[0].metrics


def _check_modes(cfg: EvaluateConfig) -> None:
    unknown = [m for m in cfg.modes if m not in MODES]
    if unknown:
        raise SonoshiftError(f"unknown reference mode '{unknown[0]}' (choose from {', '.join(MODES)}).")


def _score(run_dir: Path, cfg: EvaluateConfig, progress: bool, key: str, leakage: dict | None = None) -> dict[str, str]:
    """The texts of metrics_dataset.csv, metrics.json and metrics.csv for one run (nothing is written); the modes
    were checked by ``evaluate_runs``."""
    folder = open_run(run_dir)
    run = folder.info
    rows = folder.outputs()
    root = folder.dataset_root
    method, config_name = folder.method, str(run.get("config", ""))
    model, lpips_note = _lpips_model(cfg)
    lpips_col = lpips_note if model is not None else None
    if cfg.feature_extractor:
        from sonoshift.judges.plane.embedding import load_plane_extractor

        extractor, extractor_label = load_plane_extractor(cfg.feature_extractor)
    else:
        extractor, extractor_label = default_extractor()
    metric_cols = list(PAIR_METRICS) + ([lpips_col] if lpips_col else [])

    out_rows: list[dict[str, Any]] = []
    dataset_rows: list[dict[str, Any]] = []
    done, skipped = [], {}
    for mode in cfg.modes:
        column = MODE_COLUMN[mode]
        todo = [r for r in rows if r.get(column)]
        if not todo:
            skipped[mode] = f"no {column} in outputs.csv"
            continue
        done.append(mode)
        pooled_a, pooled_b = PooledHistogram(), PooledHistogram()
        feats_a, feats_b = [], []
        chunks = [todo[i : i + cfg.batch_size] for i in range(0, len(todo), cfg.batch_size)]
        for chunk in track(chunks, f"evaluate {mode}", disable=not progress):
            a, b, mask, used = _load_chunk(chunk, column, run_dir, root, cfg.use_mask)
            vals = pair_metrics(a, b, mask, mi_bins=cfg.mi_bins, mi_normalized=cfg.mi_normalized,
                                css_variant=cfg.css_variant)  # fmt: skip
            if model is not None:
                vals[lpips_col] = lpips_distance(model, a, b)  # type: ignore[index]
            if cfg.distribution:
                pooled_a.add(a, mask)
                pooled_b.add(b, mask)
                feats_a.append(extract_features(a, extractor))
                feats_b.append(extract_features(b, extractor))
            for i, r in enumerate(chunk):
                row = {"method": method, "config": config_name, "reference": mode,
                       "output_path": r["output_path"], "reference_path": r[column],
                       "patient_id": r.get("patient_id", ""), "video_id": r.get("video_id", ""),
                       "frame_index": r.get("frame_index", ""), "mask_used": int(used[i])}  # fmt: skip
                row.update({k: float(vals[k][i]) for k in metric_cols})
                out_rows.append(row)
        if cfg.distribution and len(todo) >= 2:
            fa, fb = torch.cat(feats_a), torch.cat(feats_b)
            kid, kid_std = kid_from_features(fa, fb, generator=torch.Generator().manual_seed(0))
            n = len(todo)
            for name, value, note in (
                ("fid", fid_from_features(fa, fb), extractor_label),
                ("kid", kid, f"{extractor_label}; std over subsets {kid_std:.3g}"),
                ("bc_dataset", float(bc_from_counts(pooled_a.counts, pooled_b.counts)), "pooled 256-bin histograms"),
            ):
                dataset_rows.append({"method": method, "config": config_name, "reference": mode, "metric": name,
                                     "value": value, "n_outputs": n, "n_references": n, "note": note})  # fmt: skip
    if not out_rows:
        raise SonoshiftError(f"run {run_dir} has no reference frames for the modes {', '.join(cfg.modes)}.")

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ID_COLUMNS + metric_cols, lineterminator="\n")
    w.writeheader()
    for r in out_rows:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    dbuf = io.StringIO()
    dw = csv.DictWriter(dbuf, fieldnames=["method", "config", "reference", "metric", "value", "n_outputs",
                                          "n_references", "note"], lineterminator="\n")  # fmt: skip
    dw.writeheader()
    for r in dataset_rows:
        dw.writerow({k: _fmt(v) for k, v in r.items()})
    paired = dataset_paired(root)
    meta = {
        "method": method,
        "config": config_name,
        "run": run_dir.name,
        "source_domain": run.get("source_domain"),
        "target_domain": run.get("target_domain"),
        "split": run.get("split"),
        "modes": done,
        "modes_skipped": skipped,
        "mode_descriptions": {m: MODE_TEXT[m] for m in done} | (
            {"target": UNPAIRED_TARGET_TEXT} if "target" in done and paired is False else {}),
        "paired": paired,
        "mask_used": any(r["mask_used"] for r in out_rows),
        "mask_note": "metrics computed only inside the field-of-view mask" if any(r["mask_used"] for r in out_rows)
        else "no field-of-view mask: metrics over the whole frame",
        "css_variant": "mean of (c + s) / 2" if cfg.css_variant == "mean" else "mean of c * s",
        "mi": f"normalized 2I/(H_a+H_b), {cfg.mi_bins} bins" if cfg.mi_normalized else f"bits, {cfg.mi_bins} bins",
        "lpips": lpips_note if model is None else f"{lpips_col} on the whole frame (LPIPS takes no mask)",
        "extractor_label": extractor_label if cfg.distribution else None,
        "metric_columns": metric_cols,
        "higher_is_better": {k: REGISTRY[k].higher_is_better for k in metric_cols},
        "n_frames": len(rows),
        "evaluate_config": to_dict(cfg),
        "evaluation_key": key,
        "leakage": leakage,
        "sonoshift_version": sonoshift.__version__,
    }
    return {"metrics_dataset.csv": dbuf.getvalue(), "metrics.json": json.dumps(meta, indent=2) + "\n",
            "metrics.csv": buf.getvalue()}
