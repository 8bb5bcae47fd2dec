"""The common start of every training entry point (CycleGAN, DDGAN, cascade)."""

from __future__ import annotations

from pathlib import Path

import torch

from sonoshift.engine.device import select_device
from sonoshift.engine.distributed import DistInfo, init_distributed
from sonoshift.errors import SonoshiftError
from sonoshift.seeding import seed_everything


def start_training(data: str | Path, seed: int, device: str, threads: int) -> tuple[Path, DistInfo, torch.device]:
    """Check that ``data`` is a prepared dataset, join the torchrun process group (or run alone), seed the global
    generators for this rank, set the CPU threads (``threads`` > 0; 0 keeps PyTorch's default) and pick the
    device (``"auto"``: cuda > mps > cpu). Returns (data path, process info, device)."""
    data = Path(data)
    if not (data / "dataset.json").is_file():
        raise SonoshiftError(f"{data} is not a prepared dataset (no dataset.json); run `sonoshift prepare` first.")
    info = init_distributed()
    seed_everything(seed, info.rank)
    if threads > 0:
        torch.set_num_threads(threads)
    return data, info, select_device(device)
