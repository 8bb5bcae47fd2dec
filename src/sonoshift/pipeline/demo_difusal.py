"""The demo's synthesis half: a short DiFUSAL loop (``sonoshift.difusal``) on the demo's prepared simulator data.

One resumable stage of ``sonoshift demo`` (after the judges, before the report): it runs the loop of
``configs/cpu/difusal_demo.yaml`` into ``<demo>/difusal`` (its own report: ``<demo>/difusal/report.html``) and
gives the demo report two sections, the verdict first. The loop is sized to add ~2-3 CPU-minutes, so its numbers
are a smoke measurement of the real code path, not the issue's protocol (``sonoshift difusal -c
configs/cpu/difusal.yaml``; docs/difusal.md).

Label hygiene: the demo's plane classifier (trained on the target domain's training labels) becomes the loop's
frozen plane critic only when every label regime of the loop keeps all labels; otherwise the loop fits its own
critics on the regime's labels (``difusal.judge_critic``).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from sonoshift.config import Validated, load_config, to_dict
from sonoshift.pipeline.stages import StageLog, is_stale, path_key, run_stage

STAGE = "DiFUSAL synthesis loop"
HEADLINE_COLUMNS = ("regime", "arm", "round", "macro_f1", "accuracy", "ga_mae_days", "harmonized_accuracy",
                    "harmonized_macro_f1", "adapted_accuracy", "adapted_macro_f1", "n_synthetic", "n_accepted")


@dataclasses.dataclass(frozen=True)
class DemoDifusalConfig(Validated):
    """enabled: run the loop in the demo; config: its YAML (relative to the repository or absolute); overrides:
    key=value settings on it (``difusal.overrides=[loop.rounds=1]``); reuse_plane_judge: the demo's plane
    classifier is the frozen plane critic when label hygiene allows it (every regime keeps all labels)."""

    enabled: bool = True
    config: str = "configs/cpu/difusal_demo.yaml"
    overrides: tuple[str, ...] = ()
    reuse_plane_judge: bool = True


def loop_config(dcfg: DemoDifusalConfig, plane_judge: Path | None) -> Any:
    """The loop's DifusalConfig; with ``plane_judge`` (a trained plane classifier folder) as its plane critic
    when ``reuse_plane_judge`` and every label regime keeps all labels."""
    from sonoshift.difusal.config import DifusalConfig
    from sonoshift.pipeline.study import config_path

    path, items = config_path(dcfg.config), list(dcfg.overrides)
    cfg = load_config(DifusalConfig, path, items)
    if (dcfg.reuse_plane_judge and plane_judge is not None and not cfg.critics.plane_checkpoint
            and all(f >= 1 for f in cfg.label_fractions)):
        cfg = load_config(DifusalConfig, path, [*items, f"critics.plane_checkpoint={plane_judge}"])
    return cfg


def run_loop(cfg: Any, data: Path, out: Path, progress: bool) -> dict[str, Any]:
    """Run (or continue) the loop into ``out`` and write its report; a JSON-able summary: report path, the
    verdict lines, the last round's headline rows, the critic used and the loop's seconds."""
    from sonoshift.difusal.report import config_verdict, write_report
    from sonoshift.difusal.rounds import regime_name, run_difusal

    import torch

    threads = torch.get_num_threads()
    try:
        run_difusal(cfg, data, out, progress=progress)  # sets the loop's thread count (cfg.threads)
    finally:
        torch.set_num_threads(threads)
    report = write_report(out)
    table = pd.read_csv(out / "metrics.csv")
    last = table[table["round"] == cfg.loop.rounds]
    cols = [c for c in HEADLINE_COLUMNS if c in last]
    sec = pd.read_csv(out / "stage_seconds.csv").drop_duplicates(["regime", "arm", "round"], keep="last")
    return {
        "run": str(out), "report": str(report), "verdict": config_verdict(cfg, table),
        "rounds": cfg.loop.rounds, "regimes": [regime_name(f) for f in cfg.label_fractions],
        "plane_critic": cfg.critics.plane_checkpoint or "fitted on the regime's labels",
        "headline": last[cols].astype(object).where(last[cols].notna(), None).to_dict("records"),
        "loop_seconds": float(sec["seconds"].sum()), "loop_cpu_seconds": float(sec["cpu_seconds"].sum()),
    }


def run_demo_difusal(dcfg: DemoDifusalConfig, root: Path, data: Path, plane_judge: Path | None, data_key: Any,
                     log: StageLog, force: bool, progress: bool) -> dict[str, Any]:
    """The demo stage: ``root/difusal`` from ``data``; redone from scratch when its settings, the data or the
    plane judge changed (the loop refuses a folder of another config), resumed when it was interrupted."""
    from sonoshift.outputs import file_digest

    cfg = loop_config(dcfg, plane_judge)
    out = root / "difusal"
    judge = plane_judge / "classifier.json" if plane_judge is not None else None
    key = [to_dict(cfg), data_key, path_key(data, root),
           file_digest(judge) if judge is not None and judge.is_file() and cfg.critics.plane_checkpoint else None]
    if force or is_stale(STAGE, root, key):
        shutil.rmtree(out, ignore_errors=True)
    return run_stage(STAGE, root, key, lambda: run_loop(cfg, data, out, progress), force=force, log=log)


REAL_STAGE = "DiFUSAL synthesis loop, Spain -> Africa"


def real_loop_overrides() -> list[str]:
    """Where the loop of ``sonoshift demo --real`` finds its inputs, relative to the Spain -> Africa stage's
    ``translation`` dataset (its ``--data``): Spanish labelled frames (domain ``spain``), the African test part
    (``../african_test``), the unlabelled African adaptation part (domain ``africa`` of the same dataset: also what
    the plane classifiers are re-normalized on, ``data.adapt_bn``) and the stage's CycleGAN africa -> spain as the
    harmonizer."""
    from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS

    return ["data.domains=[spain]", "data.test_path=../african_test", "data.test_part=african_test",
            "data.unlabelled_path=.", "data.unlabelled_domains=[africa]", "data.unlabelled_part=african_adaptation",
            "data.harmonizer=../models/cyclegan", "data.adapt_bn=true",
            f"data.adapt_zooms=[{','.join(str(z) for z in DEFAULT_ZOOMS)}]"]


def run_real_difusal(dcfg: DemoDifusalConfig, root: Path, spain_africa: Path, log: StageLog, force: bool,
                     progress: bool) -> dict[str, Any]:
    """The ``demo --real`` stage: the loop of ``dcfg.config`` on the Spain -> Africa stage's prepared data and
    translator (``spain_africa``: its folder) into ``root/difusal``; redone when its settings or the translator
    changed, resumed when it was interrupted."""
    from sonoshift.difusal.config import DifusalConfig
    from sonoshift.outputs import file_digest
    from sonoshift.pipeline.study import config_path

    cfg = load_config(DifusalConfig, config_path(dcfg.config), [*real_loop_overrides(), *dcfg.overrides])
    data, out = spain_africa / "translation", root / "difusal"
    ckpts = spain_africa / "models" / "cyclegan" / "checkpoints"
    model = ckpts / (ckpts / "latest").read_text().strip() / "model.safetensors" if (ckpts / "latest").is_file() else None
    key = [to_dict(cfg), path_key(data, root), file_digest(model) if model is not None and model.is_file() else None]
    if force or is_stale(REAL_STAGE, root, key):
        shutil.rmtree(out, ignore_errors=True)
    return run_stage(REAL_STAGE, root, key, lambda: run_loop(cfg, data, out, progress), force=force, log=log)


GA_STAGE = "DiFUSAL GA loop, HC18"
GA_SPLIT = (0.6, 0.2, 0.2)  # HC18 patients: train / val (weakness, critics' calibration) / test


def run_hc18_difusal(dcfg: DemoDifusalConfig, root: Path, data_root: Path, log: StageLog, force: bool,
                     progress: bool) -> dict[str, Any]:
    """The ``demo --real`` GA stage: HC18 prepared at 64 px with patient splits ``GA_SPLIT`` (GA from the official
    HC by Hadlock, every frame a head) into ``root/hc18_prepared``, then the loop of ``dcfg.config`` (a one-plane,
    GA-headline config: configs/cpu/difusal_hc18_demo.yaml) into ``root/difusal_ga``; redone when its settings
    changed, resumed when it was interrupted."""
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.public import hc18_spec
    from sonoshift.difusal.config import DifusalConfig
    from sonoshift.pipeline.study import config_path

    cfg = load_config(DifusalConfig, config_path(dcfg.config), list(dcfg.overrides))
    prep = load_config(PrepareConfig, None, ["resize.size=64", f"split.fractions=[{','.join(map(str, GA_SPLIT))}]"])
    data, out = root / "hc18_prepared", root / "difusal_ga"
    run_stage("hc18: prepare for the GA loop", root, [to_dict(prep), path_key(data_root, root)],
              lambda: str(prepare(hc18_spec(data_root), data, prep, progress=progress).out), force=force, log=log)
    key = [to_dict(cfg), path_key(data, root)]
    if force or is_stale(GA_STAGE, root, key):
        shutil.rmtree(out, ignore_errors=True)
    return run_stage(GA_STAGE, root, key, lambda: run_loop(cfg, data, out, progress), force=force, log=log)


PROTOCOLS = {  # kind -> (the protocol's config, what the data are, report title)
    "sim": ("configs/cpu/difusal.yaml", "", "DiFUSAL loop"),
    "spain_africa": (
        "configs/cpu/difusal_real.yaml",
        "Spain -> Africa: plane labels of the Spanish FETAL_PLANES_DB only, tested on the African test part (never "
        "trained, tuned or selected on); the unlabelled African adaptation part trains the generator as images "
        "only; harmonized = the test frames mapped toward Spain by the Spain -> Africa stage's CycleGAN; adapted BN = "
        "each arm's plane classifiers re-normalized on the unlabelled adaptation images (AdaBN, no label); the "
        "translated arms add the Spanish labelled frames mapped toward Africa by the same CycleGAN's reverse "
        "generator. ",
        "DiFUSAL loop, Spain -> Africa"),
    "hc18": (
        "configs/cpu/difusal_hc18.yaml",
        "GA on real heads: HC18 (GA from the official head circumference by Hadlock; every frame a head, so the "
        "plane parts of the loop are idle and the GA regressor is the downstream model), patient splits 60 / 20 / "
        "20, headline GA MAE in days on the test split (lower is better). ",
        "DiFUSAL GA loop, HC18"),
}


def report_sections(summary: dict[str, Any], kind: str = "sim") -> list[Any]:
    """Two sections for the demo report: the verdict with the last round's headline table, then the curves and
    the last round's accepted candidates. ``kind``: "sim" (the demo's loop), "spain_africa" or "hc18" (the loops
    of ``demo --real``)."""
    from sonoshift.report.sections import ExtraSection

    run = Path(summary["run"])
    protocol, context, title = PROTOCOLS[kind]
    smoke = context + (f"A smoke run of the real loop ({summary['rounds']} rounds, a tiny generator trained for a "
                       "few hundred steps, one training seed, a few dozen candidates per round): its numbers show "
                       "that the code path works end to end, not what DiFUSAL achieves (the protocol is `sonoshift "
                       f"difusal -c {protocol}`, docs/difusal.md). Plane critic: {summary['plane_critic']}. Full "
                       f"loop report: {summary['report']}.")
    verdict = " ".join(summary["verdict"]) or "no finished round."
    table = pd.DataFrame(summary["headline"])
    first = ExtraSection(title=f"Synthesis half: {title} (smoke run) — verdict",
                         caption=f"Verdict (smoke measurement, see below): {verdict} {smoke}", table=table)
    images = []
    for rg in summary["regimes"]:
        images += [p for p in (run / "report" / f"{rg}_curves.png", run / "report" / f"{rg}_reasons.png",
                               run / "report" / f"{rg}_accepted.png") if p.is_file()]
    second = ExtraSection(title=f"{title}: per-round scores, reasons and accepted candidates", images=tuple(images),
                          caption="Per round and arm: accuracy, macro-F1 and GA MAE on the test split (the headline "
                                  "is marked); accepted / rejected candidates by reason; the last round's accepted "
                                  "candidates (plane, conditioned GA).")
    return [first, second]


__all__ = ["DemoDifusalConfig", "loop_config", "real_loop_overrides", "report_sections", "run_demo_difusal",
           "run_hc18_difusal", "run_loop", "run_real_difusal"]
