"""The main job: simulate -> prepare -> train (CycleGAN, DDGAN, cascade, segmenter) -> harmonize -> evaluate ->
judge (plane classifier, GA estimator) -> synthesis (a short DiFUSAL loop) -> report.

Every stage writes files under one folder (default ``runs/demo``) and is skipped on the next run when it finished
with the same settings (``force=True`` redoes everything). ``run_demo`` is the API; ``sonoshift demo`` the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

from sonoshift.atomic import atomic_write_text
from sonoshift.config import NonNegInt, PosInt, Range, Validated, load_config, to_dict
from sonoshift.data.splits import check_fractions
from sonoshift.pipeline.demo_difusal import DemoDifusalConfig, report_sections, run_demo_difusal
from sonoshift.pipeline.judges import JudgesConfig, adapted_section
from sonoshift.pipeline.stages import StageLog, path_key, run_stage
from sonoshift.pipeline.study import StudyConfig, config_digest, config_path, run_study
from sonoshift.progress import console


@dataclasses.dataclass(frozen=True)
class DemoConfig(Validated):
    """The demo on simulated data, sized to finish in minutes on 2 CPU cores.

    patients / sweeps / frames_per_sweep / sim_size / GA range: the simulated dataset (both profiles of the
    study). The data must carry the measurements: 24 patients with gestational ages stratified over 16-40 weeks,
    split 12 / 4 / 8 (train / val / test, by patient), one blind VSI sweep and the three targeted standard-plane
    sweeps per patient, so head, abdomen and femur planes are each about a quarter of the frames.
    steps_segmenter: target-domain segmenter steps (0 = its config's); study: what is trained and scored;
    judges: the plane classifier and GA estimator that judge every run (``sonoshift.pipeline.judges``);
    difusal: the synthesis half, a short DiFUSAL loop on the prepared data (``sonoshift.pipeline.demo_difusal``).
    task_critic: also train a second target-domain segmenter (the judge's recipe, the next seed; never the judge)
    with which the diffusion translators choose their output gamma after training (``methods.output_gamma``:
    the gamma under which it is surest of the validation source frames; no source label is read). An option:
    over three training seeds it raised the cascade's Dice share of the gap 77.4 -> 79.0 % at the cost of 1.1 dB
    GT PSNR and a texture further from the truth than the CycleGAN's on two seeds (docs/diffusion.md §19).
    """

    patients: PosInt = 24
    sweeps: tuple[str, ...] = ("tr-mid", "std-head", "std-abdomen", "std-femur")
    frames_per_sweep: PosInt = 20
    sim_size: Annotated[int, Range(32)] = 160
    ga_min_weeks: Annotated[float, Range(12, 42)] = 16.0
    ga_max_weeks: Annotated[float, Range(12, 42)] = 40.0
    split_fractions: tuple[float, float, float] = (0.5, 0.15, 0.35)
    workers: PosInt = 2
    segmenter_config: str = "configs/cpu/segmenter.yaml"
    steps_segmenter: NonNegInt = 0
    task_critic: bool = False
    # The diffusion configs' own budgets (1500 steps) take ~12 min each on 2 cores: the demo trains them shorter;
    # both start from their input (residual generator), so a short run can only add to it.
    study: StudyConfig = dataclasses.field(default_factory=lambda: StudyConfig(steps={"ddgan": 300, "cascade": 300}))
    judges: JudgesConfig = dataclasses.field(default_factory=JudgesConfig)
    difusal: DemoDifusalConfig = dataclasses.field(default_factory=DemoDifusalConfig)

    def __post_init__(self) -> None:  # a wrong split says so before the run folder exists
        super().__post_init__()
        check_fractions(self.split_fractions, "config key 'split_fractions':")


def _without_judges(cfg: DemoConfig) -> dict[str, Any]:
    """The demo settings the stages before the judges depend on (changing a judge or the DiFUSAL loop retrains
    nothing else)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in ("judges", "difusal")}


def _segmenter_key(cfg: DemoConfig) -> list[Any]:
    """The target segmenter's stage key: the demo settings without the judges, without the translators'
    training seed (the segmenter is trained once, with ``study.seed``, whatever seed the translators use) and
    without ``task_critic`` (whether the translators also get a critic does not change the judge)."""
    settings = _without_judges(dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, train_seed=None)))
    settings.pop("task_critic", None)
    return [settings, "segmenter", config_digest(cfg.segmenter_config)]


def _judge_runs(cfg: DemoConfig, root: Path, data: Path, seg_dir: Path, runs: list[Path], data_key: Any,
                log: StageLog, force: bool, progress: bool, base: Path | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the plane classifier (target domain, frozen; under ``base``, default ``root``) and judge every run:
    RUN/planes.csv and RUN/ga.csv. Returns ({method: {variant: scores}}, the judge re-normalized on unlabelled
    source frames: ``adapted_reference``). base: a shared demo folder whose plane classifier is used
    (``run_demo``'s ``shared``)."""
    from sonoshift.outputs import file_digest
    from sonoshift.pipeline.judges import RunJudges, adapted_reference, judge_run, train_plane_judge

    study, jcfg = cfg.study, cfg.judges
    home = root if base is None else base  # a shared judge is made (or redone by --force) in its own folder only
    plane_dir = home / "models" / "plane_classifier"
    plane_key = [to_dict(jcfg), data_key, study.target, study.seed, "plane classifier",
                 config_digest(jcfg.plane_config)]
    run_stage("train plane classifier", home, plane_key,
              lambda: train_plane_judge(data, plane_dir, jcfg, domain=study.target, seed=study.seed,
                                        progress=progress), force=force and base is None, log=log)  # fmt: skip
    loaded: list[RunJudges] = []  # loaded once, on first use; source and ground-truth frames are judged once

    def _judges() -> RunJudges:
        if not loaded:
            loaded.append(RunJudges.load(plane_dir, seg_dir, jcfg.ga_plane))
        return loaded[0]

    ref_key = [plane_key, study.source, "adapted reference", "zooms"]
    reference = run_stage("plane judge re-normalized on unlabelled source frames", root, ref_key,
                          lambda: adapted_reference(plane_dir, data, study.source), force=force, log=log)
    scores = {}
    for run in runs:
        # A run harmonized again has new metrics (its digest changes the key); one whose judge files are gone
        # (re-harmonized into the same bytes) is judged again too.
        done = all((run / f).is_file() for f in ("planes.csv", "ga.csv"))
        key = [plane_key, _without_judges(cfg), path_key(run, root), file_digest(run / "metrics.csv")]
        scores[run.name] = run_stage(f"judge planes + GA {run.name}", root, key,
                                     lambda r=run: judge_run(r, _judges(), data), force=force or not done, log=log)
    return scores, reference


def _train_segmenter(cfg: DemoConfig, data: Path, out: Path, progress: bool, seed_offset: int = 0
                     ) -> dict[str, Any]:
    """The target-domain segmenter of the demo's recipe, trained with ``study.seed + seed_offset`` (0: the frozen
    judge; 1: the translators' critic)."""
    from sonoshift.downstream.target_segmenter import SegmenterConfig, train_target_segmenter

    overrides = [f"domain={cfg.study.target}", f"train.seed={cfg.study.seed + seed_offset}"]
    if cfg.steps_segmenter:
        overrides.append(f"train.steps={cfg.steps_segmenter}")
    scfg = load_config(SegmenterConfig, config_path(cfg.segmenter_config), overrides)
    seg = train_target_segmenter(data, out, scfg, progress=progress)
    return {"checkpoint": str(out), "info": {k: v for k, v in seg.info.items() if k != "label_lut"}}


def run_demo(
    out: str | Path = "runs/demo", cfg: DemoConfig = DemoConfig(), *, force: bool = False, progress: bool = True,
    shared: str | Path | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out``; return {"report": html path, "stages": {...}, "paths": {...}}.

    Stages already finished with the same settings are reused unless ``force``. Raises SonoshiftError on bad
    input and KeyboardInterrupt (after saving a checkpoint) when interrupted; running again resumes.
    shared: another demo folder with the same data settings whose simulated data, prepared data, target
    segmenter and plane-classifier judge are used (made there first if they are missing or stale): the seeds of
    `sonoshift demo --seeds` after the first share the first one's, as the protocol says (only the translators'
    seed changes).
    """
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.report import make_report
    from sonoshift.sim.simulate import SimConfig, simulate

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    base = root if shared is None else Path(shared)  # where the data and the frozen judges live
    force_base = force and shared is None  # --force redoes a shared folder's stages once, in its own run
    log = StageLog()
    study = cfg.study
    sim_dir, data, seg_dir, report_dir = base / "sim", base / "data", base / "models" / "segmenter", root / "report"

    sim_cfg = SimConfig(
        patients=cfg.patients,
        profiles=(study.source, study.target),
        seed=study.seed,
        size=cfg.sim_size,
        frames_per_sweep=cfg.frames_per_sweep,
        sweeps=cfg.sweeps,
        ga_min_weeks=cfg.ga_min_weeks,
        ga_max_weeks=cfg.ga_max_weeks,
        ga_spread="stratified",
        workers=cfg.workers,
    )
    run_stage("simulate", base, to_dict(sim_cfg), lambda: str(simulate(sim_dir, sim_cfg, progress=progress, force=True)),
              force=force_base, log=log)

    from sonoshift.data.splits import SplitConfig

    prep_cfg = PrepareConfig(
        resize=ResizeConfig(size=study.size), source_domain=study.source, target_domain=study.target,
        split=SplitConfig(fractions=cfg.split_fractions),
    )

    def _prepare() -> str:
        if force_base and data.exists():
            shutil.rmtree(data)
        return str(prepare([sim_dir], data, prep_cfg, progress=progress).out)

    run_stage("prepare", base, [to_dict(prep_cfg), to_dict(sim_cfg)], _prepare, force=force_base, log=log)
    run_stage("train segmenter", base, _segmenter_key(cfg),
              lambda: _train_segmenter(cfg, data, seg_dir, progress), force=force_base, log=log)
    critic = base / "models" / "critic_segmenter" if cfg.task_critic else None
    if critic is not None:
        run_stage("train critic segmenter", base, [*_segmenter_key(cfg), "critic"],
                  lambda: _train_segmenter(cfg, data, critic, progress, seed_offset=1), force=force_base, log=log)
    runs = run_study(data, root, study, log=log, force=force, progress=progress, segmenter=seg_dir, critic=critic)
    judged, reference = ({}, None)
    if cfg.judges.enabled:
        judged, reference = _judge_runs(cfg, root, data, seg_dir, runs, [to_dict(prep_cfg), to_dict(sim_cfg)], log,
                                        force, progress, None if shared is None else base)
    synthesis = None
    if cfg.difusal.enabled:
        judge = base / "models" / "plane_classifier" if cfg.judges.enabled else None
        synthesis = run_demo_difusal(cfg.difusal, root, data, judge, [to_dict(prep_cfg), to_dict(sim_cfg)], log,
                                     force, progress)
    extra = (([adapted_section(judged, reference)] if reference else [])
             + (report_sections(synthesis) if synthesis else []))
    # The report is cheap and reads every run: always rewritten.
    report = run_stage(
        "report", root, to_dict(cfg),
        lambda: str(make_report(runs, report_dir, extra_sections=extra, force=True) / "index.html"), force=True,
        log=log,
    )
    summary = {
        "report": report,
        "stages": log.entries,
        "judges": judged,
        "judge_adapted_reference": reference,
        "difusal": synthesis,
        "paths": {
            "simulated data": str(sim_dir),
            "prepared data": str(data),
            "models": str(root / "models"),
            "harmonized runs": str(root / "harmonized"),
            "report": str(report_dir),
            **({"DiFUSAL loop": str(root / "difusal")} if synthesis else {}),
        },
    }
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def print_summary(summary: dict[str, Any], title: str = "sonoshift demo: done") -> None:
    """Where everything is, and how long each stage took."""
    console.rule(f"[bold]{title}")
    for name, entry in summary["stages"].items():
        console.print(f"  {name:<40} {entry['status']:<7} {entry['seconds']:7.1f} s")
    judged = summary.get("judges") or {}
    if judged:
        console.print("\n  downstream judges: plane accuracy / macro-F1, GA |error| (days) — raw, harmonized, ground truth")
        for method, v in judged.items():
            cells = []
            for variant in ("source", "harmonized", "ground_truth"):
                s = v.get(variant, {})
                cells.append(f"{s.get('plane_accuracy', float('nan')):.2f} / {s.get('plane_macro_f1', float('nan')):.2f}, "
                             f"{s.get('ga_abs_error_days', float('nan')):.1f} d")
            console.print(f"  {method:<18} " + "  |  ".join(cells))
        ref = summary.get("judge_adapted_reference")
        if ref:
            a = ref["adapted"]
            console.print(f"  {'raw, judge AdaBN':<18} {a['plane_accuracy']:.2f} / {a['plane_macro_f1']:.2f} (plane "
                          f"judge re-normalized on {ref['adapted_on_frames']} unlabelled source frames: a harmonizer "
                          "should beat it)")
            z = ref.get("adapted_zoomed")
            if z:
                console.print(f"  {'raw, judge zooms':<18} {z['plane_accuracy']:.2f} / {z['plane_macro_f1']:.2f} (the "
                              "same, as a zoom ensemble re-normalized at each zoom)")
    synthesis = summary.get("difusal") or {}
    if synthesis:
        console.print("\n  synthesis (DiFUSAL smoke run; numbers are a smoke measurement): "
                      + " ".join(synthesis.get("verdict") or ["no finished round"]))
    console.print("")
    for key, value in summary["paths"].items():
        console.print(f"  {key:<18} {value}")
    console.print(f"\n  open the report: [bold]{summary['report']}[/bold]")
