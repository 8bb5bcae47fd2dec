"""Method registry: a method name -> its builder and its translator loader (docs/engine.md §5).

A method lives in ``sonoshift/methods/<name>.py`` and calls :func:`register_method` when imported; unknown
names are imported lazily, so adding a method never edits this file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from sonoshift.errors import SonoshiftError


class Translator(Protocol):
    """A trained image translator: float (B,1,H,W) in [-1,1] -> same shape in [-1,1], same device."""

    method: str
    image_size: tuple[int, int]
    source_domain: str
    target_domain: str

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class MethodEntry:
    """How to build a method for training and how to load its translator from a checkpoint."""

    name: str
    build: Callable[..., Any]
    load_translator: Callable[..., Translator]


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(name: str, *, build: Callable[..., Any], load_translator: Callable[..., Translator]) -> None:
    """Register method ``name``: ``build(cfg, dataset, device) -> method`` and
    ``load_translator(ckpt: ModelCheckpoint, device, **options) -> Translator``."""
    _REGISTRY[name] = MethodEntry(name, build, load_translator)


def get_method(name: str) -> MethodEntry:
    """The registry entry for ``name`` (imports ``sonoshift.methods.<name>`` on first use)."""
    if name not in _REGISTRY:
        if not name.isidentifier():
            raise SonoshiftError(f"unknown method '{name}'.")
        try:
            importlib.import_module(f"sonoshift.methods.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"sonoshift.methods.{name}":
                raise SonoshiftError(f"unknown method '{name}' (no module sonoshift.methods.{name}).") from None
            raise
    if name not in _REGISTRY:
        raise SonoshiftError(f"module sonoshift.methods.{name} does not register a method named '{name}'.")
    return _REGISTRY[name]


def load_translator(path: str | Path, device: str | torch.device | None = None, **options: Any) -> Translator:
    """Load the translator of the checkpoint at ``path`` (checkpoint folder, run folder or model file),
    dispatching on the method recorded in it. ``device`` None keeps the weights on CPU until the first call,
    then follows the input's device. ``options`` are method specific (CycleGAN: ``reverse``)."""
    from sonoshift.engine.checkpoint import read_model

    ckpt = read_model(path)
    entry = get_method(ckpt.method)
    return entry.load_translator(ckpt, None if device is None else torch.device(device), **options)


__all__ = ["MethodEntry", "Translator", "get_method", "load_translator", "register_method"]
