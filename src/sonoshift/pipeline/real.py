"""The real-data run: harmonize FETAL_PLANES_DB Aloka -> Voluson E6 and the African centres -> one centre.

Same stages and report as the simulated demo, on the public data in ``../shared/data`` (read in place, never
copied). Real data has no ground truth, so frames are scored against their paired target-domain frame (the
paper's protocol: a different patient) and against their own source (structure kept). A fetal-head segmenter
trained on HC18 measures trans-thalamic heads before and after harmonization.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.config import load_config, to_dict
from sonoshift.errors import SonoshiftError
from sonoshift.pipeline.stages import StageLog, run_stage
from sonoshift.pipeline.study import StudyConfig, config_path, run_study


@dataclasses.dataclass(frozen=True)
class RealConfig:
    """The real-data run. african_target: the centre the others are harmonized toward (the other centres are
    pooled into one source domain ``other_centres``); study: methods, size and step budgets (domains are set
    per dataset); hc18_config / steps_hc18: the head segmenter."""

    data_root: str = "../shared/data"
    fpdb_source: str = "Aloka"
    fpdb_target: str = "Voluson E6"
    african_target: str = "Malawi"
    hc18_config: str = "configs/cpu/hc18_segmenter.yaml"
    steps_hc18: int = 400
    study: StudyConfig = dataclasses.field(
        default_factory=lambda: StudyConfig(size=64, steps_cyclegan=800, steps_ddgan=250, steps_cascade=250)
    )


OTHER_CENTRES = "other_centres"


def find_data_root(data_root: str | Path) -> Path:
    """The shared data folder. The default ``../shared/data`` is also looked for next to the repository; a folder
    the user named must hold ``fetal_planes_db/`` itself."""
    from sonoshift.pipeline.study import repo_root

    default = str(data_root) == RealConfig.data_root
    candidates = [Path(data_root)] + ([repo_root().parent / "shared" / "data"] if default else [])
    for cand in candidates:
        if (cand / "fetal_planes_db").is_dir():
            return cand
    raise SonoshiftError(
        f"shared data folder {data_root} does not hold fetal_planes_db/; pass --data-root with the folder described "
        "in ../shared/data/README.md."
    )


def _fpdb_spec(cfg: RealConfig, root: Path) -> Any:
    from sonoshift.data.public import fetal_planes_db_spec

    return fetal_planes_db_spec(root, machines=[cfg.fpdb_source, cfg.fpdb_target])


def _african_spec(cfg: RealConfig, root: Path) -> Any:
    from sonoshift.data.public import african_planes_spec

    spec = african_planes_spec(root)
    centres = sorted({it.domain for it in spec.items})
    if cfg.african_target not in centres:
        raise SonoshiftError(f"african_target '{cfg.african_target}' is not a centre (centres: {', '.join(centres)}).")
    items = tuple(
        it if it.domain == cfg.african_target
        else dataclasses.replace(it, domain=OTHER_CENTRES, labels={**it.labels, "centre": it.domain})
        for it in spec.items
    )
    return dataclasses.replace(spec, items=items)


def _heads(cfg: RealConfig, root: Path, data_root: Path, fpdb_runs: list[Path], progress: bool) -> dict[str, Any]:
    """Train the HC18 head segmenter, measure FPDB heads raw and harmonized; write heads_summary.csv."""
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter
    from sonoshift.downstream.head_eval import evaluate_heads_fpdb, evaluate_heads_run, summarize_heads

    seg_dir = root / "models" / "hc18_segmenter"
    overrides = [f"data_dir={data_root / 'hc18'}"]
    if cfg.steps_hc18:
        overrides.append(f"train.steps={cfg.steps_hc18}")
    hcfg = load_config(Hc18Config, config_path(cfg.hc18_config), overrides)
    _, val = train_hc18_segmenter(hcfg, seg_dir, progress=progress)
    tables = [evaluate_heads_fpdb(data_root, seg_dir, root / "heads" / "fpdb_original.csv", progress=progress)]
    for run in fpdb_runs:
        t = evaluate_heads_run(run, seg_dir, plane_contains="brain", progress=progress)
        tables.append(t.assign(method=json.loads((run / "run.json").read_text())["method"]))
    summary = summarize_heads(pd.concat(tables, ignore_index=True))
    atomic_write_text(root / "heads" / "heads_summary.csv", summary.to_csv(index=False, lineterminator="\n"))
    dice = float(val["dice"].mean()) if "dice" in val else float("nan")
    return {"segmenter": str(seg_dir), "hc18_val_dice": dice, "summary": str(root / "heads" / "heads_summary.csv")}


def run_real(
    out: str | Path = "runs/real", cfg: RealConfig = RealConfig(), *, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run both real-data studies and the head evaluation into ``out``; return the summary (report paths...)."""
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.report import make_report

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    data_root = find_data_root(cfg.data_root)
    log = StageLog()
    reports: dict[str, str] = {}
    fpdb_runs: list[Path] = []
    studies = (
        ("fpdb", cfg.fpdb_source, cfg.fpdb_target, _fpdb_spec),
        ("african", OTHER_CENTRES, cfg.african_target, _african_spec),
    )
    for name, source, target, make_spec in studies:
        sub = root / name
        study = dataclasses.replace(cfg.study, source=source, target=target)
        prep_cfg = PrepareConfig(resize=ResizeConfig(size=study.size), source_domain=source, target_domain=target)
        spec = make_spec(cfg, data_root)
        run_stage(f"{name}: prepare", sub, [to_dict(prep_cfg), str(data_root)],
                  lambda s=spec, d=sub / "data", p=prep_cfg: str(prepare(s, d, p, progress=progress).out),
                  force=force, log=log)
        runs = run_study(sub / "data", sub, study, log=log, force=force, progress=progress, prefix=f"{name}: ")
        reports[name] = run_stage(f"{name}: report", sub, to_dict(study),
                                  lambda r=runs, o=sub / "report": str(make_report(r, o) / "index.html"), force=True, log=log)
        if name == "fpdb":
            fpdb_runs = runs
    heads = run_stage("heads: HC18 segmenter on FETAL_PLANES_DB", root, [to_dict(cfg), str(data_root)],
                      lambda: _heads(cfg, root, data_root, fpdb_runs, progress), force=force, log=log)
    summary = {
        "report": reports.get("fpdb", ""),
        "stages": log.entries,
        "paths": {**{f"{k} report": v for k, v in reports.items()}, "heads": heads["summary"]},
    }
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary
