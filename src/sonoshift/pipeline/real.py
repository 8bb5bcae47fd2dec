"""The real-data run: harmonize FETAL_PLANES_DB Aloka -> Voluson E6 and the African centres -> one centre.

Same stages and report as the simulated demo, on the public data in ``../shared/data`` (read in place, never
copied). Real data has no ground truth, so frames are scored against their paired target-domain frame (the
paper's protocol: a different patient) and against their own source (structure kept). A fetal-head segmenter
trained on HC18 measures trans-thalamic heads before and after harmonization, and as the GA estimator it is
scored on HC18's held-out images (HC error, GA error per trimester). The downstream plane check: a classifier
trained on Spanish FETAL_PLANES_DB labels only, tested on the African test part raw and harmonized
(``pipeline.spain_africa``). The African images follow the African rule (``judges.plane.african``): translators
see the adaptation part only; the test part is only ever scored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.config import NonNegInt, UnitFloat, Validated, load_config, to_dict
from sonoshift.data.splits import check_fractions
from sonoshift.errors import SonoshiftError
from sonoshift.pipeline.demo_difusal import DemoDifusalConfig
from sonoshift.pipeline.spain_africa import SpainAfricaConfig
from sonoshift.pipeline.stages import StageLog, path_key, run_stage
from sonoshift.pipeline.study import StudyConfig, config_digest, config_path, run_study

if TYPE_CHECKING:
    from sonoshift.report import ExtraSection


@dataclasses.dataclass(frozen=True)
class RealConfig(Validated):
    """The real-data run. african_target: the centre the others are harmonized toward (the other centres are
    pooled into one source domain ``other_centres``; the adaptation part of the African rule only); study:
    methods, size and step budgets (domains are set per dataset); hc18_config / steps_hc18: the head segmenter
    measuring FPDB heads; hc18_ga_config / steps_hc18_ga: the GA estimator's first stage (empty config: that head
    segmenter), hc18_refiner_config / steps_hc18_refiner: its crop refiner (second stage; empty config: none), both
    trained in the HC18 stage and scored on HC18's held-out images; spain_africa: the Spain -> Africa plane check;
    difusal: the DiFUSAL loop on the Spain -> Africa protocol (pipeline/demo_difusal.py; needs spain_africa);
    difusal_ga: the DiFUSAL GA loop on HC18 heads (its own prepared copy of HC18, 64 px, patient splits 60/20/20);
    fpdb_split: the FETAL_PLANES_DB study's patient fractions (train, val, test), a third of the patients scored as
    in the simulator demo (the default 15 % left 9 Aloka frames of 6 patients to score)."""

    data_root: str = "../shared/data"
    fpdb_source: str = "Aloka"
    fpdb_target: str = "Voluson E6"
    fpdb_split: tuple[UnitFloat, UnitFloat, UnitFloat] = (0.5, 0.15, 0.35)
    african_target: str = "Malawi"
    hc18_config: str = "configs/cpu/hc18_segmenter.yaml"
    steps_hc18: NonNegInt = 400
    hc18_ga_config: str = "configs/cpu/hc18_head_ga.yaml"
    steps_hc18_ga: NonNegInt = 800
    hc18_refiner_config: str = "configs/cpu/hc18_head_crop.yaml"
    steps_hc18_refiner: NonNegInt = 800
    study: StudyConfig = dataclasses.field(
        default_factory=lambda: StudyConfig(size=64, steps={"cyclegan": 800, "ddgan": 250, "cascade": 250})
    )
    spain_africa: SpainAfricaConfig = dataclasses.field(default_factory=SpainAfricaConfig)
    difusal: DemoDifusalConfig = dataclasses.field(default_factory=lambda: DemoDifusalConfig(
        config="configs/cpu/difusal_real_demo.yaml", reuse_plane_judge=False))
    difusal_ga: DemoDifusalConfig = dataclasses.field(default_factory=lambda: DemoDifusalConfig(
        config="configs/cpu/difusal_hc18_demo.yaml", reuse_plane_judge=False))

    def __post_init__(self) -> None:  # a wrong split says so before the run folder exists
        super().__post_init__()
        check_fractions(self.fpdb_split, "config key 'fpdb_split':")


OTHER_CENTRES = "other_centres"


def _settings(cfg: RealConfig) -> dict[str, Any]:
    """The settings the studies and the head stages depend on (the Spain -> Africa stage keys its own)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in ("spain_africa", "difusal", "difusal_ga")}


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


def _african_spec(cfg: RealConfig, root: Path, part: str = "adaptation") -> Any:
    """The African images of one ``part`` of the African rule, the target centre against the others pooled."""
    from sonoshift.data.public import african_planes_spec

    from sonoshift.judges.plane.african import in_part

    spec = african_planes_spec(root)
    centres = sorted({it.domain for it in spec.items})
    if cfg.african_target not in centres:
        raise SonoshiftError(f"african_target '{cfg.african_target}' is not a centre (centres: {', '.join(centres)}).")
    mine = in_part([it.patient_id for it in spec.items], part)  # translators learn from the adaptation part only
    items = tuple(
        it if it.domain == cfg.african_target
        else dataclasses.replace(it, domain=OTHER_CENTRES, labels={**it.labels, "centre": it.domain})
        for it, keep in zip(spec.items, mine) if keep
    )
    return dataclasses.replace(spec, items=items)


def _african_test_part(cfg: RealConfig, data_root: Path, out: Path, prep: Any, progress: bool) -> str:
    """The African test part prepared like the study's data, every patient in its ``test`` split (a splits file
    written beside ``out``): the frames the African study is scored on. Its adaptation part's own test split holds
    a few patients (one Malawi frame in session 39's run); the test part is what the African rule keeps for
    scoring, and no translator ever sees it."""
    from sonoshift.data.prepare import prepare
    from sonoshift.data.splits import write_splits

    spec = _african_spec(cfg, data_root, part="test")
    domains = sorted({it.domain for it in spec.items})
    splits: dict[str, Any] = {d: {"train": [], "val": [], "test": sorted({it.patient_id for it in spec.items
                                                                          if it.domain == d})} for d in domains}
    file = out.parent / f"{out.name}_splits.json"
    write_splits(file, {**splits, "seed": 0})
    p = dataclasses.replace(prep, split=dataclasses.replace(prep.split, file=str(file)))
    return str(prepare(spec, out, p, progress=progress).out)


HEADS_VERSION = 2  # 2: heads.csv image paths no longer depend on the working directory; per-method summary rows


def _heads(cfg: RealConfig, root: Path, data_root: Path, fpdb_runs: list[Path], progress: bool) -> dict[str, Any]:
    """Train the HC18 head segmenter, measure FPDB heads raw and harmonized; write heads_summary.csv (one row per
    machine and variant, and per method for the harmonized rows; the runs' shared source frames counted once)."""
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter
    from sonoshift.downstream.head_eval import evaluate_heads_fpdb, evaluate_heads_run, summarize_heads

    seg_dir = root / "models" / "hc18_segmenter"
    overrides = [f"data_dir={data_root / 'hc18'}"]
    if cfg.steps_hc18:
        overrides.append(f"train.steps={cfg.steps_hc18}")
    hcfg = load_config(Hc18Config, config_path(cfg.hc18_config), overrides)
    _, val = train_hc18_segmenter(hcfg, seg_dir, progress=progress)
    tables = [evaluate_heads_fpdb(data_root, seg_dir, root / "heads" / "fpdb_original.csv", progress=progress)]
    runs: dict[str, str] = {}
    for run in fpdb_runs:
        t = evaluate_heads_run(run, seg_dir, plane_contains="brain", progress=progress)
        method = _method(run)
        runs[method] = str(run / "heads.csv")
        tables.append(t.assign(method=[method if v == "harmonized" else "" for v in t["variant"]]))
    table = pd.concat(tables, ignore_index=True)
    if "method" in table.columns:
        table = table.drop_duplicates(["group", "variant", "method", "name"])
    summary = summarize_heads(table)
    atomic_write_text(root / "heads" / "heads_summary.csv", summary.to_csv(index=False, lineterminator="\n"))
    dice = float(val["dice"].mean()) if "dice" in val else float("nan")
    return {"segmenter": str(seg_dir), "hc18_val_dice": dice, "summary": str(root / "heads" / "heads_summary.csv"),
            "original": str(root / "heads" / "fpdb_original.csv"), "runs": runs}


def _hc18_ga(cfg: RealConfig, root: Path, data_root: Path, seg_dir: Path, progress: bool = False) -> dict[str, Any]:
    """The GA estimator scored on its held-out HC18 images: a first stage (its own segmenter trained here from
    ``hc18_ga_config``, else the head segmenter ``seg_dir``; ellipse calibrated on its HC18 training masks) and,
    unless ``hc18_refiner_config`` is empty, a crop refiner trained here on the same split as its second stage.
    Writes the HC18 summary and per-trimester GA table (CSV paths)."""
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter
    from sonoshift.judges.ga.hc18_report import build_estimator, report_table

    def config(name: str, steps: int, refiner: bool) -> Hc18Config:
        overrides = [f"data_dir={data_root / 'hc18'}"] + ([f"train.steps={steps}"] if steps else [])
        hcfg = load_config(Hc18Config, config_path(name), overrides)
        if bool(hcfg.head_crops) != refiner:
            raise SonoshiftError(f"{name} is {'not ' if refiner else ''}a crop refiner (head_crops: {hcfg.head_crops}); "
                                 f"give it as {'hc18_ga_config' if hcfg.head_crops else 'hc18_refiner_config'}.")
        return hcfg

    stages = ([(config(cfg.hc18_ga_config, cfg.steps_hc18_ga, False), root / "models" / "hc18_ga_segmenter")]
              if cfg.hc18_ga_config else [])
    if cfg.hc18_refiner_config:
        stages.append((config(cfg.hc18_refiner_config, cfg.steps_hc18_refiner, True), root / "models" / "hc18_refiner"))
    for hcfg, out_dir in stages:
        train_hc18_segmenter(hcfg, out_dir, progress=progress)
    members = ([] if cfg.hc18_ga_config else [seg_dir]) + [d for _, d in stages]
    out = root / "models" / "ga_estimator"
    est = build_estimator(members, data_root / "hc18", out)
    s = est.segmenter.info["ga_estimator"]["validation"]
    if not s:
        raise SonoshiftError(f"the HC18 segmenter {seg_dir} has no held-out HC18 images to score the GA estimator on.")
    hc = pd.DataFrame([{"images": s["images"], "hc_abs_err_mm_mean": s["hc_abs_err_mm_mean"],
                        "hc_abs_err_mm_median": s["hc_abs_err_mm_median"], "hc_abs_err_mm_p95": s["hc_abs_err_mm_p95"],
                        "hc_signed_err_mm_mean": s["hc_signed_err_mm_mean"], "no_head_found": s["no_head_found"],
                        "stages": len(members), "first_stage": str(members[0])}])
    paths = {"estimator": str(out), "hc": str(root / "hc18" / "hc_error.csv"), "ga": str(root / "hc18" / "ga_error.csv")}
    atomic_write_text(Path(paths["hc"]), hc.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(Path(paths["ga"]), report_table(s).to_csv(index=False, lineterminator="\n"))
    return paths


def _hc18_section(hc18: dict[str, Any]) -> ExtraSection:
    from sonoshift.report import ExtraSection

    hc = pd.read_csv(hc18["hc"]).iloc[0]
    ga = pd.read_csv(hc18["ga"])
    two = int(hc.get("stages", 1)) > 1
    what = ("The two-stage GA estimator (a whole-frame HC18 segmenter places a head-centred crop, a crop refiner "
            "segments it again, smaller crops are searched where its map is not elliptic" if two
            else "The HC18 head segmenter as the GA estimator (head")
    caption = (f"{what} -> one ellipse -> HC -> GA by Hadlock and INTERGROWTH-21st) on its {int(hc['images'])} held-out HC18 images: HC |error| mean "
               f"{hc['hc_abs_err_mm_mean']:.2f} mm, median {hc['hc_abs_err_mm_median']:.2f}, 95th percentile "
               f"{hc['hc_abs_err_mm_p95']:.2f}, signed mean {hc['hc_signed_err_mm_mean']:+.2f}; no head found in "
               f"{int(hc['no_head_found'])}. On HC18 GA comes from HC by a formula, so the GA error (days, per "
               "trimester of the reference GA; |error| mean and std, signed mean) is the HC error in days.")
    return ExtraSection(title="HC18: HC and GA error of the GA estimator", caption=caption, table=ga)


def _spain_africa_section(result: dict[str, Any]) -> ExtraSection:
    from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS
    from sonoshift.pipeline.spain_africa import spain_africa_table
    from sonoshift.report import ExtraSection

    table = spain_africa_table(result["table"])
    caption = ("A plane classifier trained on Spanish FETAL_PLANES_DB labels only (the four planes the African set "
               "shares), tested on the African test part (never trained, tuned or selected on): raw; adapted = the "
               "same classifier with its BatchNorm statistics re-estimated on the unlabelled African adaptation "
               "images (AdaBN, no label read); zoomed / adapted_zoomed = a test-time zoom ensemble (softmax averaged "
               f"over centred zooms {', '.join(f'{z:g}' for z in DEFAULT_ZOOMS)}, for the wider African fields of "
               "view), raw and re-normalized at each "
               "zoom on the same unlabelled images; harmonized = after a CycleGAN trained on the Spanish images and the "
               "unlabelled African adaptation part maps the test frames toward the Spanish images (harmonized_adapted: "
               "both); translated = a second classifier trained on the Spanish images plus their copies in the "
               "African look made by the same CycleGAN's reverse generator (labels kept), raw and as the "
               "re-normalized zoom ensemble (translated_adapted_zoomed). Accuracy, macro-F1 and ECE over all test "
               "frames, then the accuracy per centre. The classifiers, the translator and the frames share one "
               "frame size.")
    return ExtraSection(title="Spain -> Africa plane classification, raw, adapted, zoomed, translated and harmonized",
                        caption=caption, table=table)


def _method(run: Path) -> str:
    from sonoshift.runs import open_run

    return open_run(run).method


def _heads_section(heads: dict[str, Any], figure: Path) -> ExtraSection:
    """The fpdb report's head section: the outline figure (written to ``figure``) and heads_summary.csv."""
    from sonoshift.downstream.head_figure import head_outline_figure
    from sonoshift.report import ExtraSection

    runs = [(m, Path(p)) for m, p in heads.get("runs", {}).items() if m != "untranslated"]  # raw = its output
    head_outline_figure(figure, heads["original"], runs)
    summary = pd.read_csv(heads["summary"], keep_default_na=False, na_values=["nan", "NaN", ""])
    keep = [c for c in summary.columns if not c.endswith("_std") or c.startswith(("ellipse_iou", "hc_frac"))]
    return ExtraSection(
        title="Fetal heads: HC18 segmenter on FETAL_PLANES_DB",
        images=(figure,),
        caption=(
            "A fetal-head segmenter trained on HC18 applied to trans-thalamic FETAL_PLANES_DB heads. (a) Raw images "
            "of each machine; (b) the test frames of the source machine, raw and after each method's harmonization. "
            "Yellow: the predicted head mask's edge; cyan: the ellipse fitted to it (HC = its perimeter). "
            "Ellipse IoU (mask vs its ellipse, 1 = a perfect ellipse) is a quality proxy: there is no reference mask. "
            f"HC18 validation Dice {float(heads.get('hc18_val_dice', float('nan'))):.3f}. Table: per machine and "
            "input (raw / cropped originals, source / harmonized run frames, per method); hc_px in pixels of the "
            "image measured, hc_frac = HC / image perimeter."
        ),
        table=summary[keep],
    )


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """One harmonization study of the real-data run: its folder name, the spec maker of its images, how they are
    prepared and the study settings (source and target domain set)."""

    name: str
    make_spec: Callable[[RealConfig, Path], Any]
    prepare: Any  # PrepareConfig
    study: StudyConfig


def study_plan(cfg: RealConfig) -> list[StudyPlan]:
    """The two harmonization studies. The FETAL_PLANES_DB study is scored on its own test split
    (``cfg.fpdb_split``); the African study on the African test part, so its own split (the default) only feeds
    training and checkpoint choice."""
    from sonoshift.data.prepare import PrepareConfig
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.data.splits import SplitConfig

    def plan(name: str, make_spec: Callable[[RealConfig, Path], Any], source: str, target: str,
             split: SplitConfig) -> StudyPlan:
        prep = PrepareConfig(resize=ResizeConfig(size=cfg.study.size), source_domain=source, target_domain=target,
                             split=split)
        return StudyPlan(name, make_spec, prep, dataclasses.replace(cfg.study, source=source, target=target))

    return [plan("fpdb", _fpdb_spec, cfg.fpdb_source, cfg.fpdb_target, SplitConfig(fractions=cfg.fpdb_split)),
            plan("african", _african_spec, OTHER_CENTRES, cfg.african_target, SplitConfig())]


def run_real(
    out: str | Path = "runs/real", cfg: RealConfig = RealConfig(), *, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run both real-data studies and the head evaluation into ``out``; return the summary (report paths...)."""
    from sonoshift.data.prepare import prepare
    from sonoshift.pipeline.spain_africa import run_spain_africa
    from sonoshift.report import make_report

    data_root = find_data_root(cfg.data_root)  # before the folder exists: a wrong data root leaves nothing
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    log = StageLog()
    reports: dict[str, str] = {}
    plan = study_plan(cfg)
    study_runs: dict[str, list[Path]] = {}
    for st in plan:
        name, prep_cfg, study = st.name, st.prepare, st.study
        sub = root / name
        spec = st.make_spec(cfg, data_root)
        run_stage(f"{name}: prepare", sub, [to_dict(prep_cfg), path_key(data_root, sub)],
                  lambda s=spec, d=sub / "data", p=prep_cfg: str(prepare(s, d, p, progress=progress).out),
                  force=force, log=log)
        eval_data = None
        if name == "african":  # scored on the African test part (the rule's scoring set), not a few patients
            eval_data = sub / "test_part"
            run_stage(f"{name}: prepare test part", sub, [to_dict(prep_cfg), path_key(data_root, sub)],
                      lambda d=eval_data, p=prep_cfg: _african_test_part(cfg, data_root, d, p, progress),
                      force=force, log=log)
        study_runs[name] = run_study(sub / "data", sub, study, log=log, force=force, progress=progress,
                                     prefix=f"{name}: ", eval_data=eval_data)  # fmt: skip
    heads_digests = [config_digest(c) for c in (cfg.hc18_config, cfg.hc18_ga_config, cfg.hc18_refiner_config)]
    heads = run_stage("heads: HC18 segmenter on FETAL_PLANES_DB", root,
                      [_settings(cfg), path_key(data_root, root), f"heads v{HEADS_VERSION}", heads_digests],
                      lambda: _heads(cfg, root, data_root, study_runs["fpdb"], progress), force=force, log=log)
    hc18 = run_stage("hc18: GA estimator on held-out HC18", root,
                     [_settings(cfg), path_key(data_root, root), f"heads v{HEADS_VERSION}", heads_digests, "hc18 v2"],
                     lambda: _hc18_ga(cfg, root, data_root, Path(heads["segmenter"]), progress), force=force, log=log)
    spain = (run_spain_africa(root / "spain_africa", data_root, cfg.spain_africa, log=log, force=force,
                              progress=progress) if cfg.spain_africa.enabled else None)  # fmt: skip
    difusal = None
    if spain and cfg.difusal.enabled:
        from sonoshift.pipeline.demo_difusal import run_real_difusal
        difusal = run_real_difusal(cfg.difusal, root, root / "spain_africa", log, force, progress)
    difusal_ga = None
    if cfg.difusal_ga.enabled:
        from sonoshift.pipeline.demo_difusal import run_hc18_difusal
        difusal_ga = run_hc18_difusal(cfg.difusal_ga, root, data_root, log, force, progress)
    figure = root / "heads" / "heads_outlines.png"
    # Reports come last so the fpdb page carries the head section; they are cheap and always rewritten.
    for st in plan:
        name, study = st.name, st.study
        sub = root / name

        def _report(r: list[Path] = study_runs[name], o: Path = sub / "report", n: str = name) -> str:
            extra = ([_heads_section(heads, figure), _hc18_section(hc18)] if n == "fpdb"
                     else [_spain_africa_section(spain)] if spain else [])  # fmt: skip
            from sonoshift.pipeline.demo_difusal import report_sections
            if n == "african" and difusal:
                extra += report_sections(difusal, kind="spain_africa")
            if n == "fpdb" and difusal_ga:
                extra += report_sections(difusal_ga, kind="hc18")
            return str(make_report(r, o, extra_sections=extra, force=True) / "index.html")

        reports[name] = run_stage(f"{name}: report", sub, to_dict(study), _report, force=True, log=log)
    summary = {
        "report": reports.get("fpdb", ""),
        "stages": log.entries,
        "paths": {**{f"{k} report": v for k, v in reports.items()}, "heads": heads["summary"],
                  "heads figure": str(figure), "hc18 GA": hc18["ga"], **({"spain->africa": spain["table"]} if spain else {}),
                  **({"difusal report": difusal["report"]} if difusal else {}),
                  **({"difusal GA report": difusal_ga["report"]} if difusal_ga else {})},
        **({"difusal": {k: difusal[k] for k in ("verdict", "headline")}} if difusal else {}),
        **({"difusal_ga": {k: difusal_ga[k] for k in ("verdict", "headline")}} if difusal_ga else {}),
    }
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary
