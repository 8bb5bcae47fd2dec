"""Shared test set-up: one torch thread per worker, the --runslow switch, the real-data location and the tiny
prepared dataset that the training tests share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data in ../shared/data; tests that use it are skipped with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def make_tiny_dataset(
    root: Path, n_src: int = 8, n_tgt: int = 6, size: int = 32, seed: int = 0, related: bool = False
) -> Path:
    """The smallest prepared dataset a training run accepts: packed uint8 train caches of a source domain
    ("handheld", ``n_src`` frames) and a target domain ("cart", ``n_tgt``), ``size`` x ``size``, and a
    dataset.json with the resize it was "prepared" with. Random frames from ``seed``; with ``related`` the target
    is a brightened copy of the source (a learnable mapping)."""
    rng = np.random.default_rng(seed)
    (root / "cache" / "train").mkdir(parents=True)
    if related:
        base = rng.integers(0, 256, (max(n_src, n_tgt), size, size)).astype(np.float32)
        src, tgt = (base[:n_src] * 0.6).astype(np.uint8), np.clip(base[:n_tgt] * 1.1 + 10, 0, 255).astype(np.uint8)
    else:
        src = rng.integers(0, 256, (n_src, size, size), dtype=np.uint8)
        tgt = rng.integers(0, 256, (n_tgt, size, size), dtype=np.uint8)
    np.save(root / "cache/train/handheld.npy", src)
    np.save(root / "cache/train/cart.npy", tgt)
    info = {"domains": ["handheld", "cart"], "config": {"resize": {"size": size, "mode": "pad"}}}
    (root / "dataset.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="session")
def tiny_dataset() -> Callable[..., Path]:
    """``make_tiny_dataset`` (call it with a folder and optional sizes); session-scoped so that module fixtures
    can use it too."""
    return make_tiny_dataset
