"""A tiny prepared dataset with plane labels for the classifier tests: three shape classes that a small CNN
separates in a few dozen steps (a bright ring, horizontal bars, a bright blob in a corner), two domains
(the second darker and noisier), several patients per domain and split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonoshift.data.manifests import write_manifest
from sonoshift.data.splits import write_splits
from sonoshift.judges.plane.augment import AugmentConfig
from sonoshift.judges.plane.net import NetConfig
from sonoshift.judges.plane.train import ClassifierConfig, ClassifierTrainConfig

CLASSES = ("bars", "blob", "ring")
SIZE = 32


def frame(cls: str, rng: np.random.Generator, dark: bool) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    cy, cx = SIZE / 2 + rng.uniform(-3, 3), SIZE / 2 + rng.uniform(-3, 3)
    if cls == "ring":
        r = np.hypot(yy - cy, xx - cx)
        img = (np.abs(r - rng.uniform(8, 11)) < 2).astype(float)
    elif cls == "bars":
        img = ((yy.astype(int) // 4) % 2 == 0).astype(float)
    else:
        img = (np.hypot(yy - 8 - rng.uniform(-2, 2), xx - 8 - rng.uniform(-2, 2)) < 5).astype(float)
    img = 40 + 170 * img * (0.7 if dark else 1.0) + rng.normal(0, 25 if dark else 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_prepared(root: Path, per_split=(6, 2, 2), seed: int = 0) -> Path:
    """Write the dataset under ``root`` and return it: domains A and B; per domain ``per_split`` patients for
    train/val/test, each patient with one frame of every class."""
    rng = np.random.default_rng(seed)
    splits: dict = {"seed": seed}
    rows: dict[str, list] = {"train": [], "val": [], "test": []}
    for dom in ("A", "B"):
        splits[dom] = {"train": [], "val": [], "test": []}
        n = 0
        for split, count in zip(("train", "val", "test"), per_split):
            for _ in range(count):
                pid = f"{dom}{n:02d}"
                n += 1
                splits[dom][split].append(pid)
                for cls in CLASSES:
                    rel = f"frames/{dom}/{pid}/{cls}/00000.png"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(frame(cls, rng, dom == "B")).save(root / rel)
                    rows[split].append({"patient_id": pid, "domain": dom, "video_id": cls, "frame_index": 0,
                                        "path": rel, "mask_path": "", "plane": cls})
    for split, r in rows.items():
        write_manifest(root / f"manifest_{split}.csv", r)
    write_splits(root / "splits.json", splits)
    (root / "dataset.json").write_text(json.dumps({"name": "planes-test"}))
    return root


TINY = ClassifierConfig(
    image_size=32, net=NetConfig(stem=8, widths=(16, 32), dropout=0.0),
    train=ClassifierTrainConfig(steps=120, batch_size=12, lr=3e-3, eval_every=20, patience=3, seed=0),
    augment=AugmentConfig(enabled=False),
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The dataset above, once per test module."""
    return make_prepared(tmp_path_factory.mktemp("planes"))


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """(classifier, its folder): TINY trained on ``prepared``."""
    from sonoshift.judges.plane.api import train_on_dataset

    out = tmp_path_factory.mktemp("clf") / "clf"
    return train_on_dataset(prepared, out, TINY, progress=False), out
