from __future__ import annotations

import json
from pathlib import Path

import pytest

from sonoshift.data.splits import (
    SplitConfig,
    check_leakage,
    make_splits,
    read_splits,
    split_counts,
    split_of,
    write_splits,
)
from sonoshift.errors import SonoshiftError


@pytest.mark.parametrize(
    "n, expected",
    [(3, (1, 1, 1)), (7, (5, 1, 1)), (20, (14, 3, 3)), (100, (70, 15, 15)), (41, (29, 6, 6))],
)
def test_split_counts_hand_computed(n: int, expected: tuple[int, int, int]) -> None:
    # val/test = round(0.15 n) but >= 1, train = the rest: 41 -> 6.15 -> 6, 6, 29
    assert split_counts(n, (0.7, 0.15, 0.15)) == expected


def test_split_counts_limits() -> None:
    with pytest.raises(SonoshiftError, match="2 patient\\(s\\) are too few for a 3-way split"):
        split_counts(2, (0.7, 0.15, 0.15))
    assert split_counts(2, (0.8, 0.0, 0.2)) == (1, 0, 1)
    with pytest.raises(SonoshiftError, match="summing to 1"):
        split_counts(10, (0.5, 0.2, 0.2))


@pytest.mark.parametrize("fractions", [(0.5, 0.2, 0.2), (0.0, 0.5, 0.5), (0.3, 0.3, 0.3)])
def test_a_split_config_that_cannot_split_is_refused_when_built(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(SonoshiftError, match="summing to 1 with train > 0"):
        SplitConfig(fractions=fractions)
    assert SplitConfig(fractions=(0.8, 0.0, 0.2)).fractions == (0.8, 0.0, 0.2)


def test_make_splits_partition_and_determinism() -> None:
    patients = {"a": [f"a{i}" for i in range(20)], "b": [f"b{i}" for i in range(10)]}
    s1 = make_splits(patients, SplitConfig(seed=3))
    s2 = make_splits({"b": list(reversed(patients["b"])), "a": patients["a"]}, SplitConfig(seed=3))
    assert s1 == s2  # same seed -> same split, whatever the input order
    for d, ids in patients.items():
        parts = [set(s1[d][k]) for k in ("train", "val", "test")]
        assert set().union(*parts) == set(ids)
        assert sum(len(p) for p in parts) == len(ids)  # disjoint
    assert [len(s1["a"][k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert s1["seed"] == 3
    others = [make_splits(patients, SplitConfig(seed=s))["a"]["test"] for s in range(4, 9)]
    assert any(o != s1["a"]["test"] for o in others)
    assert split_of(s1, "a", s1["a"]["val"][0]) == "val"
    assert split_of(s1, "a", "nobody") is None


def test_too_few_patients_names_domain() -> None:
    with pytest.raises(SonoshiftError, match="domain 'tiny'"):
        make_splits({"big": list("abcdef"), "tiny": ["x", "y"]})


def test_write_read_and_leakage(tmp_path: Path) -> None:
    s = make_splits({"a": list("abcdefg")})
    write_splits(tmp_path / "splits.json", s)
    assert read_splits(tmp_path / "splits.json") == s
    leaky = {"a": {"train": ["p1", "p2"], "val": ["p2"], "test": []}, "seed": 0}
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    with pytest.raises(SonoshiftError, match="patient 'p2' leaks between a/train and a/val") as e:
        read_splits(tmp_path / "leaky.json")
    assert "leaky.json" in str(e.value)
    with pytest.raises(SonoshiftError, match="patient 'q' leaks"):
        check_leakage({"a": {"train": ["q"]}, "b": {"test": ["q"]}})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SonoshiftError, match="not valid JSON"):
        read_splits(tmp_path / "bad.json")
    with pytest.raises(SonoshiftError, match="leaks"):
        write_splits(tmp_path / "never.json", leaky)
    assert not (tmp_path / "never.json").exists()


def test_joint_split_for_paired_domains() -> None:
    ids = [f"p{i}" for i in range(10)]
    s = make_splits({"handheld": ids, "cart": ids[:8]}, SplitConfig(seed=1), joint=True)
    check_leakage(s)  # same patient, same split in both domains: no leakage
    for k in ("train", "val", "test"):
        assert set(s["cart"][k]) == set(s["handheld"][k]) & set(ids[:8])
    assert [len(s["handheld"][k]) for k in ("train", "val", "test")] == list(split_counts(10, (0.7, 0.15, 0.15)))
