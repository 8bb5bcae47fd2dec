"""The African adaptation/test rule: written once, reproducible from the data, patient-wise within centres."""

from __future__ import annotations

import pytest

from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.african import (
    african_part,
    african_split,
    check_african_split,
    draw_african_split,
    in_part,
)


def test_written_split_is_the_rule_applied_to_the_shared_data(shared_data):
    assert draw_african_split(shared_data) == african_split()


def test_written_split_is_patient_wise_within_each_centre():
    split = african_split()
    centres = [c for c, v in split.items() if isinstance(v, dict)]
    assert sorted(centres) == ["Algeria", "Egypt", "Ghana", "Malawi", "Uganda"]
    for c in centres:
        adapt, test = set(split[c]["adaptation"]), set(split[c]["test"])
        assert adapt and test and not adapt & test
        assert all(p.startswith(f"{c}-") for p in adapt | test)
    assert not african_part("adaptation") & african_part("test")
    assert in_part(["Ghana-" + split["Ghana"]["test"][0].split("-", 1)[1], "Nowhere-1"], "test").tolist() == [True, False]


def test_overlap_and_unknown_part_are_errors():
    bad = {"X": {"adaptation": ["X-1"], "test": ["X-1"]}, "seed": 0}
    with pytest.raises(SonoshiftError, match="X-1"):
        check_african_split(bad)
    with pytest.raises(SonoshiftError, match="unknown African part"):
        african_part("train")
