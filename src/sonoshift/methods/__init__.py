"""The method registry: every kind of trained model, one file per method (docs/architecture.md, docs/engine.md §5).

A method is ONE file that calls :func:`register` with a :class:`MethodSpec`: its kind (``translator``,
``synthesizer``, ``judge``; see ``sonoshift.methods.kinds``), its frozen config class, its training dataset, its
builder (the object that owns the training step, ``sonoshift.engine.loop.Method``) and the loader of its
inference object. `sonoshift train <name>`, the study pipeline, `harmonize` and the report find methods here;
nothing else names them.

Where methods come from: the modules of this package (imported on demand), plus plug-in modules named in the
environment variable ``SONOSHIFT_PLUGINS`` (comma separated) or in the ``sonoshift.methods`` entry-point group.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sonoshift.errors import SonoshiftError
from sonoshift.methods.kinds import KINDS, Translator, TranslatorBase


@dataclass(frozen=True)
class MethodSpec:
    """Everything generic code needs to train and load one method.

    name: the method's name (CLI, checkpoints, run folders); kind: a key of ``KINDS``;
    config: frozen dataclass of the run configuration, with a ``train`` field (``engine.loop.EngineConfig``);
    dataset(data, cfg): the training dataset of the prepared dataset folder ``data``;
    build(cfg, dataset, device, rank): the engine method (owns networks, optimisers and ``train_step``);
    load(ckpt, device, **options): the inference object (of the kind's Protocol) of a ``ModelCheckpoint``;
    summary: one line for `sonoshift train --help`;
    default_config: repository-relative YAML the study pipeline trains with;
    needs: config key -> method whose trained run that key names (``{"cyclegan": "cyclegan"}`` for the DDGAN,
        whose condition comes from a trained CycleGAN); the CLI offers ``--<key>``, the study fills it in;
    study_order: position in the default study (None: not trained by default);
    trainer: for a method trained by its own command instead of the shared engine (the plane classifier's
        early stopping on validation macro-F1), that command; ``dataset`` and ``build`` are then None and
        `sonoshift train` does not list it, but ``load_model`` loads it like any other;
    select(cfg, data, run): called after a completed training run (main process) to choose the checkpoint that
        inference uses (``checkpoints/selected``; e.g. ``methods.select``); None keeps the latest.
    """

    name: str
    kind: str
    config: type
    dataset: Callable[[Path, Any], Any] | None
    build: Callable[[Any, Any, torch.device, int], Any] | None
    load: Callable[..., Any]
    summary: str = ""
    default_config: str = ""
    needs: Mapping[str, str] = field(default_factory=dict)
    study_order: int | None = None
    trainer: str = ""
    select: Callable[[Any, Path, Path], Any] | None = None


_REGISTRY: dict[str, MethodSpec] = {}
_discovered = False


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (the call at the bottom of every method file); returns it."""
    if spec.kind not in KINDS:
        raise SonoshiftError(f"method '{spec.name}' has unknown kind '{spec.kind}' (known: {', '.join(KINDS)}).")
    if not spec.name.isidentifier():
        raise SonoshiftError(f"method name '{spec.name}' must be a Python identifier.")
    _REGISTRY[spec.name] = spec
    return spec


def _plugins() -> list[str]:
    names = [n.strip() for n in os.environ.get("SONOSHIFT_PLUGINS", "").split(",") if n.strip()]
    from importlib.metadata import entry_points

    names += [ep.module for ep in entry_points(group="sonoshift.methods")]  # "pkg.module" or "pkg.module:attr"
    return names


def _import_plugin(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise SonoshiftError(f"method plug-in module '{module}' (SONOSHIFT_PLUGINS) cannot be imported.") from None
        raise


def discover() -> None:
    """Import every method module of this package and every plug-in (once)."""
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "kinds" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for module in _plugins():
        _import_plugin(module)
    _discovered = True


def get(name: str) -> MethodSpec:
    """The spec of method ``name`` (imports ``sonoshift.methods.<name>`` or the plug-ins on first use)."""
    if name not in _REGISTRY and name.isidentifier():
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    if name not in _REGISTRY:
        discover()
    if name not in _REGISTRY:
        known = ", ".join(s.name for s in available())
        raise SonoshiftError(f"unknown method '{name}' (known: {known}).")
    return _REGISTRY[name]


def available(kind: str | None = None) -> list[MethodSpec]:
    """Every registered method (of ``kind`` when given), after discovery, sorted by name."""
    discover()
    return sorted((s for s in _REGISTRY.values() if kind is None or s.kind == kind), key=lambda s: s.name)


def study_methods(kind: str = "translator") -> list[str]:
    """The methods of the default study, in study order (each after the methods it needs)."""
    specs = [s for s in available(kind) if s.study_order is not None]
    return [s.name for s in sorted(specs, key=lambda s: (s.study_order, s.name))]


def config_label(path: str | Path | None) -> str | None:
    """``configs/cpu/cyclegan.yaml`` -> ``cpu/cyclegan`` (the parent folder and stem), None without a file."""
    return None if path is None else f"{Path(path).parent.name}/{Path(path).stem}"


def train_method(
    name: str,
    data: str | Path,
    out: str | Path,
    *,
    cfg: Any = None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    config_name: str | None = None,
) -> Any:
    """Train method ``name`` on the prepared dataset ``data`` into the run folder ``out`` (the API of `sonoshift
    train <name>`). ``cfg``: a ready config object; otherwise defaults <- YAML ``config`` <- ``overrides``.
    Under torchrun every process calls this; rank 0 writes. Returns the engine's ``TrainResult``."""
    from sonoshift.config import load_config
    from sonoshift.engine.run import run_training

    spec = get(name)
    if spec.trainer or spec.build is None or spec.dataset is None:
        raise SonoshiftError(f"method '{name}' is not trained by the shared engine: use `{spec.trainer or '?'}`.")
    if cfg is None:
        cfg = load_config(spec.config, config, overrides)
    for key, needed in spec.needs.items():  # e.g. the diffusion GAN's CycleGAN: say what it is and how to give it
        given = str(getattr(cfg, key, "") or "")
        if not given or not Path(given).exists():
            where = f"; the config's {key}={given} does not exist" if given else ""
            raise SonoshiftError(f"`sonoshift train {name}` needs a trained {needed}: train one with `sonoshift train "
                                 f"{needed}` and pass its run folder with --{key.replace('_', '-')} RUN{where}.")
    label = config_name if config_name is not None else config_label(config)
    return run_training(spec, data, cfg, out, resume=resume, progress=progress, config_name=label)


def _segmenter_folder(path: str | Path) -> tuple[Path, bool] | None:
    """(folder, calibrated for GA) when ``path`` is a segmenter checkpoint folder, else None."""
    import json

    from sonoshift.downstream.segmenter import META_NAME

    meta = Path(path) / META_NAME
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text(encoding="utf-8")).get("info") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise SonoshiftError(f"segmenter checkpoint {meta} is not valid JSON.") from None
    return Path(path), isinstance(info, dict) and "ga_estimator" in info


def load_model(
    path: str | Path, device: str | torch.device | None = None, *, kind: str | None = None, **options: Any
) -> Any:
    """The inference object of the checkpoint at ``path`` (checkpoint folder, run folder or model file), of
    its method's kind (``kind`` given: a checkpoint of another kind is refused with one sentence). ``device``
    None keeps the weights on CPU until the first call, then follows the input's device. ``options`` are method
    specific (CycleGAN: ``reverse``); one a loader does not take is an error."""
    import inspect

    from sonoshift.engine.checkpoint import read_model

    ckpt: Any = _segmenter_folder(path)
    if ckpt is not None:  # `sonoshift segment` / `sonoshift ga build` folders: their own format, their own loader
        spec = get("ga_head" if ckpt[1] else "unet_segmenter")
        ckpt = ckpt[0]
    else:
        ckpt = read_model(path, **({"expected": f"a {kind}"} if kind else {}))
        spec = get(ckpt.method)
    if kind is not None and spec.kind != kind:
        raise SonoshiftError(f"model {path} is a {spec.kind} ('{spec.name}'), not a {kind}.")
    dev = None if device is None else torch.device(device)
    try:
        inspect.signature(spec.load).bind(ckpt, dev, **options)
    except TypeError:
        raise SonoshiftError(f"method '{spec.name}' takes no option {', '.join(map(repr, options))}.") from None
    return spec.load(ckpt, dev, **options)


def load_translator(path: str | Path, device: str | torch.device | None = None, **options: Any) -> Translator:
    """:func:`load_model` for a translator (see ``sonoshift.methods.kinds.Translator``)."""
    return load_model(path, device, kind="translator", **options)


def has_reverse(path: str | Path) -> bool:
    """Whether the translator checkpoint / run at ``path`` also holds a target -> source generator (a CycleGAN:
    ``load_translator(path, reverse=True)``); False for any other method or a path that is not a checkpoint."""
    from sonoshift.engine.checkpoint import read_model

    try:
        return read_model(path).method == "cyclegan"
    except SonoshiftError:
        return False


__all__ = [
    "MethodSpec", "Translator", "TranslatorBase", "available", "config_label", "discover", "get", "has_reverse",
    "load_model", "load_translator", "register", "study_methods", "train_method",
]
