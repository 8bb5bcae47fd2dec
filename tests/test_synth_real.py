"""The synthesizer's real-data path: the African rule (test part never trained on) and mirroring augmentation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.data.public import african_planes_spec
from sonoshift.data.splits import write_splits
from sonoshift.config import load_config
from sonoshift.judges.plane.african import SPLIT_FILE
from sonoshift.synth.african import african_prepare_splits, african_test_mask
from sonoshift.synth.config import SynthData
from sonoshift.synth.dataset import SynthDataset
from sonoshift.synth.method import random_hflip


def _rule() -> dict:
    return json.loads(SPLIT_FILE.read_text(encoding="utf-8"))  # read directly, not through the module under test


def _patients(root: Path, split: str) -> list[str]:
    with open(root / f"manifest_{split}.csv", newline="", encoding="utf-8") as f:
        return [r["patient_id"] for r in csv.DictReader(f)]


def test_prepare_splits_put_exactly_the_test_part_in_test() -> None:
    rule = _rule()
    s = african_prepare_splits(rule, val_fraction=0.2, seed=0)
    for centre, parts in rule.items():
        if not isinstance(parts, dict):
            continue
        assert s[centre]["test"] == sorted(parts["test"])
        assert sorted(s[centre]["train"] + s[centre]["val"]) == sorted(parts["adaptation"])
        assert not set(s[centre]["train"]) & set(s[centre]["val"])
        assert len(s[centre]["val"]) >= 1 and len(s[centre]["train"]) >= 1
    assert s == african_prepare_splits(rule, val_fraction=0.2, seed=0)
    assert s != african_prepare_splits(rule, val_fraction=0.2, seed=1)  # the val draw depends on the seed
    no_val = african_prepare_splits(rule, val_fraction=0.0)
    assert all(not v["val"] for k, v in no_val.items() if isinstance(v, dict))


def test_test_mask_only_for_the_african_set() -> None:
    test = sorted(p for v in _rule().values() if isinstance(v, dict) for p in v["test"])
    ada = sorted(p for v in _rule().values() if isinstance(v, dict) for p in v["adaptation"])
    ids = [test[0], ada[0], test[-1], "nobody"]
    assert african_test_mask("african_planes", ids).tolist() == [True, False, True, False]
    assert not african_test_mask("fetal_planes_db", ids).any()


@pytest.fixture(scope="module")
def african(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real African set prepared at 16 px twice: with the rule's splits file and with a random split."""
    tmp = tmp_path_factory.mktemp("african")
    spec = african_planes_spec(shared_data)
    write_splits(tmp / "rule.json", african_prepare_splits())
    ruled = prepare(spec, tmp / "ruled", load_config(PrepareConfig, None, ["resize.size=16", f"split.file={tmp / 'rule.json'}"]),
                    progress=False).out
    random = prepare(spec, tmp / "random", load_config(PrepareConfig, None, ["resize.size=16"]), progress=False).out
    return {"ruled": Path(ruled), "random": Path(random)}


def test_rule_splits_prepare_the_test_part_as_test(african: dict[str, Path]) -> None:
    rule = _rule()
    test = {p for v in rule.values() if isinstance(v, dict) for p in v["test"]}
    root = african["ruled"]
    assert set(_patients(root, "test")) == test  # every test-part patient has frames in the data
    assert not (set(_patients(root, "train")) | set(_patients(root, "val"))) & test


def test_training_rows_never_hold_the_test_part(african: dict[str, Path]) -> None:
    rule = _rule()
    test = {p for v in rule.values() if isinstance(v, dict) for p in v["test"]}
    root = african["random"]  # an ordinary 70/15/15 split: test-part patients sit in train too
    in_train = [p for p in _patients(root, "train") if p in test]
    assert in_train, "the random split should put some test-part patients in train (else this test is vacuous)"
    ds = SynthDataset(SynthData(paths=(str(root),), size=16))
    assert ds.african_test_dropped == len(in_train)
    assert len(ds) == len(_patients(root, "train")) - len(in_train)
    assert not {r["patient_id"] for r in ds.rows} & test
    kept = SynthDataset(SynthData(paths=(str(root),), size=16), keep_african_test=True)  # scoring only
    assert len(kept) == len(_patients(root, "train")) and kept.african_test_dropped == 0


def test_random_hflip_mirrors_about_half_and_is_seeded() -> None:
    x = torch.arange(64 * 1 * 3 * 5, dtype=torch.float32).view(64, 1, 3, 5)
    y = random_hflip(x, torch.Generator().manual_seed(0))
    same = (y == x).flatten(1).all(1)
    mirrored = (y == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and not bool((same & mirrored).any())
    assert 16 <= int(mirrored.sum()) <= 48
    torch.testing.assert_close(y, random_hflip(x, torch.Generator().manual_seed(0)), rtol=0, atol=0)
