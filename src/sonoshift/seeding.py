"""Explicit randomness: every stochastic function takes a generator made here."""

from __future__ import annotations

import random

import numpy as np
import torch


def make_generator(seed: int, offset: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with ``seed + offset`` (offset is usually the process rank)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) + int(offset))
    return g


def numpy_rng(seed: int, offset: int = 0) -> np.random.Generator:
    """A numpy Generator seeded with ``seed + offset``."""
    return np.random.default_rng(int(seed) + int(offset))


def seed_everything(seed: int, offset: int = 0) -> None:
    """Seed the global python, numpy and torch generators once, at an entry point (never in library code)."""
    s = int(seed) + int(offset)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)

