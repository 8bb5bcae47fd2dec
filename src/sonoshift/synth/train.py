"""``train_synth``: the entry point of ``sonoshift train synth`` (and of torchrun workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sonoshift.config import to_dict
from sonoshift.engine.loop import TrainResult, train
from sonoshift.errors import SonoshiftError
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.dataset import SynthDataset, data_hash, dataset_name
from sonoshift.synth.method import Synth


def build(cfg: SynthConfig, dataset: SynthDataset, device: torch.device, rank: int = 0) -> Synth:
    """A :class:`Synth` method for ``dataset`` on ``device`` (the engine registry's ``build``)."""
    return Synth(cfg, device, dataset.vocab, image_size=cfg.data.size, rank=rank)


def train_synth(
    data: str | Path | list[str | Path], cfg: SynthConfig, out: str | Path, *, resume: bool = False,
    progress: bool = True, config_name: str | None = None,
) -> TrainResult:
    """Train the conditional diffusion synthesizer on one or more prepared datasets (``data``; they replace
    ``cfg.data.paths`` when given) into the run folder ``out``. Under torchrun every process calls this."""
    from dataclasses import replace

    from sonoshift.engine.start import start_training

    paths = [data] if isinstance(data, (str, Path)) else list(data)
    paths = [str(Path(p).resolve()) for p in paths] or list(cfg.data.paths)
    if not paths:
        raise SonoshiftError("give at least one prepared dataset with --data.")
    _, info, device = start_training(paths[0], cfg.train.seed, cfg.train.device, cfg.train.threads)
    cfg = replace(cfg, data=replace(cfg.data, paths=tuple(paths)))
    dataset = SynthDataset(cfg.data, seed=cfg.train.seed, balance=cfg.data.balance_planes)
    method = build(cfg, dataset, device, rank=info.rank)
    method.data_hash = data_hash(paths, cfg.data.split)
    method.datasets = paths
    method.dataset_names = [dataset_name(Path(p)) for p in paths]
    method.pixel_size_mm = dataset.pixel_size_mm()
    method.config_name = config_name
    full: dict[str, Any] = to_dict(cfg)
    return train(method, dataset, cfg.train, out, full_config=full, resume=resume, progress=progress)


__all__ = ["build", "train_synth"]
