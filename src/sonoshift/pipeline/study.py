"""One translation study on a prepared dataset: train each method, harmonize a split, score it, as stages.

Used by the simulated demo and by the real-data run; every stage is skipped when it finished before with the
same settings (see ``sonoshift.pipeline.stages``).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from sonoshift import methods as registry
from sonoshift.config import PosInt, Seed, Validated, to_dict
from sonoshift.errors import SonoshiftError
from sonoshift.pipeline.stages import StageLog, is_stale, path_key, run_stage

BASELINE = "untranslated"  # the raw source frames, scored like a method: the row every harmonizer must beat
# Cheap tricks a method must also beat (sonoshift.baselines); cyclegan_blur needs the trained CycleGAN.
CHEAP_BASELINES = ("histogram_match", "depth_affine", "cyclegan_blur")


@dataclasses.dataclass(frozen=True)
class StudyConfig(Validated):
    """What to train and score. methods: translator names (empty = the registry's default study, see
    ``sonoshift.methods.study_methods``); steps: optimisation steps per method (``steps.ddgan=400``; missing or
    0 = the config file's budget); configs: config file per method (relative to the repository, or absolute;
    missing = the method's ``default_config``); overrides: key=value settings on a method's config
    (``overrides.ddgan=[anchor_despeckle_kind=bilateral]``); size: training frame side in px; seed: data, split
    and judges; train_seed: the translators' training seed (None = ``seed``; `sonoshift demo --seeds` varies it
    alone)."""

    seed: Seed = 0
    train_seed: Seed | None = None
    source: str = "handheld"
    target: str = "cart"
    size: PosInt = 64
    methods: tuple[str, ...] = ()
    steps: dict[str, int] = dataclasses.field(default_factory=dict)
    configs: dict[str, str] = dataclasses.field(default_factory=dict)
    overrides: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    split: str = "test"
    batch_size: PosInt = 32
    baselines: tuple[str, ...] = CHEAP_BASELINES


def study_methods(cfg: StudyConfig) -> list[str]:
    """The methods ``cfg`` trains, in order (each one after the methods it needs); unknown names are an error."""
    names = list(cfg.methods) or registry.study_methods()
    for name in names:
        spec = registry.get(name)
        if spec.kind != "translator":
            raise SonoshiftError(f"study method '{name}' is a {spec.kind}, not a translator.")
        missing = [m for m in spec.needs.values() if m not in names[: names.index(name)]]
        if missing:
            raise SonoshiftError(f"study method '{name}' needs '{missing[0]}' trained before it; list it first.")
    return names


def method_config(cfg: StudyConfig, name: str) -> Path:
    """The config file the study trains ``name`` with."""
    path = cfg.configs.get(name) or registry.get(name).default_config
    if not path:
        raise SonoshiftError(f"method '{name}' has no default config; set configs.{name}=<yaml>.")
    return config_path(path)


def repo_root() -> Path:
    """The folder holding ``configs/`` (the repository of this package), else the current folder."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "configs" / "cpu").is_dir():
            return parent
    return Path.cwd()


def config_path(name: str) -> Path:
    """Resolve a config path: as given when it exists, else relative to the repository."""
    p = Path(name)
    if p.is_file():
        return p
    q = repo_root() / name
    if q.is_file():
        return q
    raise SonoshiftError(f"config file {name} does not exist (looked in {Path.cwd()} and {repo_root()}).")


def config_digest(name: str) -> str | None:
    """sha256 of the config file ``name`` (resolved as :func:`config_path`; "" = no file, None): put it in a stage
    key so that editing the file reruns the stage."""
    from sonoshift.outputs import file_digest

    return file_digest(config_path(name)) if name else None


def config_digests(cfg: StudyConfig, names: list[str]) -> dict[str, str]:
    """sha256 of the config file of each method in ``names`` and of every method they need (transitively): a stage
    keyed on them reruns when one of those files is edited, not only when another file is named."""
    out: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in out:
            out[name] = config_digest(str(method_config(cfg, name)))
            todo += list(registry.get(name).needs.values())
    return dict(sorted(out.items()))


def takes_critic(name: str) -> bool:
    """Whether method ``name``'s config has a ``task_critic`` (``methods.output_gamma``)."""
    return any(f.name == "task_critic" for f in dataclasses.fields(registry.get(name).config))


def _overrides(cfg: StudyConfig, name: str, models: Path, critic: Path | None = None) -> list[str]:
    out = [
        f"data.source_domain={cfg.source}",
        f"data.target_domain={cfg.target}",
        f"data.size={cfg.size}",
        f"train.seed={cfg.seed if cfg.train_seed is None else cfg.train_seed}",
    ]
    steps = int(cfg.steps.get(name, 0))
    out += [f"train.max_steps={steps}"] if steps else []
    out += list(cfg.overrides.get(name, ()))
    out += [f"task_critic={critic}"] if critic is not None and takes_critic(name) else []
    return out + [f"{key}={models / needed}" for key, needed in registry.get(name).needs.items()]


def train_method(method: str, cfg: StudyConfig, data: Path, models: Path, progress: bool,
                 critic: Path | None = None) -> dict[str, Any]:
    """Train ``method`` on the prepared ``data`` into ``models/<method>`` (resuming a checkpoint left there);
    ``critic``: a target-domain segmenter that chooses the output gamma of the methods that take one."""
    out = models / method
    resume = (out / "checkpoints" / "latest").is_file()  # a run stopped earlier continues from its checkpoint
    path = method_config(cfg, method)
    result = registry.train_method(method, data, out, config=path, overrides=_overrides(cfg, method, models, critic),
                                   resume=resume, progress=progress)
    if result.interrupted:
        raise KeyboardInterrupt(f"{method} training interrupted at step {result.step}; run again to resume")
    return {"run": str(out), "steps": result.step, "losses": result.losses}


def harmonize_and_score(
    method: str, cfg: StudyConfig, data: Path, models: Path, run_dir: Path, segmenter: Path | None, progress: bool,
    eval_data: Path | None = None,
) -> dict[str, Any]:
    """Translate ``cfg.split`` of ``eval_data`` (default ``data``, the training folder the baselines are fitted
    on) with the trained ``method``, write metrics.csv (and segmentation.csv)."""
    from sonoshift.evaluate import EvaluateConfig, evaluate_run
    from sonoshift.inference.harmonize import harmonize_dataset
    from sonoshift.inference.translate import Untranslated
    from sonoshift.methods.anchor import checkpoint_guard

    if method == BASELINE:
        model: Any = Untranslated(cfg.source, cfg.target, (cfg.size, cfg.size))
        config = "raw source frames"
    elif method in CHEAP_BASELINES:
        from sonoshift.baselines import make_baseline

        model, config = make_baseline(method, data, cfg.source, cfg.target, models)
    else:
        model, config = models / method, registry.config_label(method_config(cfg, method))
        if (checkpoint_guard(model) or {}).get("identity"):
            config = f"{config}; anchor guard: identity, each frame's grey-level mean and spread kept"
    harmonize_dataset(
        model, data if eval_data is None else eval_data, run_dir, split=cfg.split, batch_size=cfg.batch_size,
        progress=progress, config_name=config, force=True,  # the stage marker decided to redo it
    )
    out: dict[str, Any] = {"run": str(run_dir),
                           "metrics": str(evaluate_run(run_dir, EvaluateConfig(), progress, force=True))}
    if segmenter is not None:
        from sonoshift.downstream.evaluate_seg import evaluate_segmentation

        out["segmentation_rows"] = int(len(evaluate_segmentation(run_dir, segmenter, progress=progress)))
    return out


def run_study(
    data: Path,
    root: Path,
    cfg: StudyConfig,
    *,
    log: StageLog,
    force: bool,
    progress: bool,
    segmenter: Path | None = None,
    prefix: str = "",
    critic: Path | None = None,
    eval_data: Path | None = None,
) -> list[Path]:
    """Train every method of ``cfg`` on ``data`` (models under ``root/models``), harmonize and score the split
    (runs under ``root/harmonized``); return the run folders in method order. critic: a target-domain segmenter
    (not ``segmenter``, the judge) with which the methods that take one choose their output gamma
    (``methods.output_gamma``). eval_data: another prepared folder whose ``cfg.split`` is harmonized and scored
    instead of ``data``'s (e.g. the African test part; the models and baselines still learn from ``data``)."""
    from sonoshift.outputs import file_digest

    settings = to_dict(cfg)
    models = root / "models"
    names = study_methods(cfg)
    # a method that takes the critic is trained (and its outputs harmonized) again when the critic's weights change
    critic_keys = {m: file_digest(critic / "model.safetensors") if critic is not None and takes_critic(m) else None
                   for m in names}
    for method in names:
        name, key = (f"{prefix}train {method}",
                     [settings, path_key(data, root), method, config_digests(cfg, [method])]
                     + ([critic_keys[method]] if critic_keys[method] else []))
        if force or is_stale(name, root, key):
            # Other settings than the finished run: train from scratch rather than resume its checkpoint.
            shutil.rmtree(models / method, ignore_errors=True)
        run_stage(name, root, key, lambda m=method: train_method(m, cfg, data, models, progress, critic), force=force,
                  log=log)
    runs = []
    from sonoshift.baselines import NEEDS as baseline_needs
    from sonoshift.baselines import applicable

    baselines = [b for b in cfg.baselines if applicable(b, data, cfg.source, cfg.target, tuple(names))]
    for method in (BASELINE, *baselines, *names):
        run_dir = root / "harmonized" / method
        # outputs follow the config files of the trained methods they use
        digests = config_digests(cfg, [method] if method in names else list(baseline_needs.get(method, ())))
        run_stage(
            f"{prefix}harmonize + evaluate {method}", root, [settings, path_key(data, root), method, digests,
                                                             path_key(segmenter, root) if segmenter else None]
            + ([critic_keys[method]] if critic_keys.get(method) else [])
            + ([path_key(eval_data, root)] if eval_data is not None else []),
            lambda m=method, r=run_dir: harmonize_and_score(m, cfg, data, models, r, segmenter, progress, eval_data),
            force=force, log=log,
        )
        runs.append(run_dir)
    return runs
