"""Training entry points of the synthesizer: the registry's ``dataset`` and ``build``, and ``train_synth``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from sonoshift.engine.loop import TrainResult
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.dataset import SynthDataset, data_hash, dataset_name
from sonoshift.synth.method import Synth


def training_data(data: str | Path, cfg: SynthConfig) -> SynthDataset:
    """The training frames: the prepared dataset ``data`` (``--data``) combined with ``cfg.data.paths``."""
    first = str(Path(data).resolve())
    rest = [str(Path(p).resolve()) for p in cfg.data.paths]
    paths = tuple([first, *[p for p in rest if p != first]])
    ds = SynthDataset(replace(cfg.data, paths=paths), seed=cfg.train.seed, balance=cfg.data.balance_planes)
    if ds.african_test_dropped:
        from sonoshift.progress import console

        console.print(f"synth training data: {ds.african_test_dropped} frames of African test-part patients left out "
                      "(the African rule: the test part is never trained, tuned or selected on).")
    return ds


def build(cfg: SynthConfig, dataset: SynthDataset, device: torch.device, rank: int = 0) -> Synth:
    """A :class:`Synth` method for ``dataset`` on ``device``; records the data it is trained on."""
    method = Synth(cfg, device, dataset.vocab, image_size=cfg.data.size, rank=rank)
    method.datasets = list(dataset.paths)
    method.dataset_names = [dataset_name(Path(p)) for p in dataset.paths]
    method.data_hash = data_hash(dataset.paths, cfg.data.split)
    method.pixel_size_mm = dataset.pixel_size_mm()
    return method


def train_synth(
    data: str | Path | list[str | Path], cfg: SynthConfig, out: str | Path, *, resume: bool = False,
    progress: bool = True, config_name: str | None = None,
) -> TrainResult:
    """Train the synthesizer on one or more prepared datasets (the first is ``--data``, the others join
    ``cfg.data.paths``) into the run folder ``out`` (the API of `sonoshift train synth`)."""
    from sonoshift.methods import train_method

    paths = [data] if isinstance(data, (str, Path)) else list(data)
    extra = tuple(str(Path(p).resolve()) for p in paths[1:])
    cfg = replace(cfg, data=replace(cfg.data, paths=tuple(cfg.data.paths) + extra))
    return train_method("synth", paths[0], out, cfg=cfg, resume=resume, progress=progress, config_name=config_name)


__all__ = ["build", "train_synth", "training_data"]
