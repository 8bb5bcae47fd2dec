"""One training run of a registered method: start, build the dataset and the method, stamp, loop.

Every `sonoshift train <name>` and the study pipeline end here, so every method gets the same start (seeding,
threads, device), the same checkpoint stamp (``engine.stamp``) and the same loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from sonoshift.config import to_dict
from sonoshift.engine.loop import TrainResult, train
from sonoshift.engine.stamp import dataset_stamp
from sonoshift.engine.start import start_training


class TrainableSpec(Protocol):
    """The part of ``sonoshift.methods.MethodSpec`` the engine uses (the engine does not import methods)."""

    name: str
    select: Any  # None, or select(cfg, data, run) after a completed run: the checkpoint inference uses

    def dataset(self, data: Path, cfg: Any) -> Any: ...

    def build(self, cfg: Any, dataset: Any, device: torch.device, rank: int) -> Any: ...


def run_training(
    spec: TrainableSpec, data: str | Path, cfg: Any, out: str | Path, *, resume: bool = False, progress: bool = True,
    config_name: str | None = None,
) -> TrainResult:
    """Train ``spec``'s method with config ``cfg`` (its ``train`` field holds the engine settings) on the prepared
    dataset ``data`` into the run folder ``out``; every checkpoint carries the dataset stamp."""
    t = cfg.train
    root, info, device = start_training(data, t.seed, t.device, t.threads)
    dataset = spec.dataset(root, cfg)
    method = spec.build(cfg, dataset, device, info.rank)
    stamp = dataset_stamp(root, config_name)
    result = train(method, dataset, t, out, full_config=to_dict(cfg), resume=resume, progress=progress, stamp=stamp)
    select = getattr(spec, "select", None)
    if select is not None and not result.interrupted and info.is_main:
        chosen = select(cfg, root, Path(out))  # the checkpoint inference uses (checkpoints/selected)
        if chosen is not None:
            result.checkpoint = chosen
    return result


__all__ = ["TrainableSpec", "run_training"]
