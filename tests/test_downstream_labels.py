"""Class names from labels.json and their merge into a few segmenter classes."""

from __future__ import annotations

import json

import pytest

from sonoshift.downstream.labels import class_lookup, find_labels_json, parse_label_names, read_label_names
from sonoshift.downstream.target_segmenter import DEFAULT_GROUPS
from sonoshift.errors import SonoshiftError

NAMES = {0: "background", 1: "uterine_wall", 2: "amniotic_fluid", 3: "placenta", 4: "skull", 5: "brain",
         6: "ventricles", 7: "abdomen", 8: "stomach", 9: "spine", 10: "femur", 11: "heart", 12: "fetal_head"}


@pytest.mark.parametrize(
    "data",
    [
        {"0": "background", "3": "placenta"},
        {"background": 0, "placenta": 3},
        {"classes": [{"id": 0, "name": "background"}, {"id": 3, "name": "placenta"}]},
        {"labels": {"background": {"id": 0}, "placenta": {"id": 3}}},
    ],
)
def test_parse_label_names_shapes(data):
    assert parse_label_names(data, "x.json") == {0: "background", 3: "placenta"}


def test_parse_label_names_list_and_errors():
    assert parse_label_names(["bg", "fluid"], "x.json") == {0: "bg", 1: "fluid"}
    with pytest.raises(SonoshiftError, match="x.json"):
        parse_label_names("nonsense", "x.json")
    with pytest.raises(SonoshiftError, match="outside 0..255"):
        parse_label_names({"300": "big"}, "x.json")


def test_default_groups_merge_simulator_like_names():
    classes, lut = class_lookup(DEFAULT_GROUPS, NAMES)
    assert classes == ("background", "fetal_head", "placenta", "fluid", "fetal_body")
    merged = {NAMES[i]: classes[lut[i]] for i in NAMES}
    assert merged["uterine_wall"] == "background"
    assert merged["amniotic_fluid"] == "fluid"
    assert merged["skull"] == merged["brain"] == merged["ventricles"] == merged["fetal_head"] == "fetal_head"
    assert {merged[n] for n in ("abdomen", "stomach", "spine", "femur", "heart")} == {"fetal_body"}
    assert lut[200] == 0  # unknown ids fall to background


def test_first_matching_group_wins_and_ids_work():
    classes, lut = class_lookup({"bg": [], "a": ["*x*"], "b": ["x*", 7]}, {1: "xy", 2: "zz", 7: "q"})
    assert classes == ("bg", "a", "b")
    assert lut[1] == 1 and lut[2] == 0 and lut[7] == 2


def test_identity_when_no_groups():
    classes, lut = class_lookup({}, {0: "bg", 1: "a", 2: "b"})
    assert classes == ("bg", "a", "b") and list(lut[:3]) == [0, 1, 2]
    with pytest.raises(SonoshiftError, match="not 0..K-1"):
        class_lookup({}, {0: "bg", 5: "a"})


def test_find_labels_json_through_dataset_json(tmp_path):
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "labels.json").write_text(json.dumps(NAMES))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    assert find_labels_json(prepared) is None
    (prepared / "dataset.json").write_text(json.dumps({"config": {"input": str(sim / "sonoshift_spec.yaml")}}))
    found = find_labels_json(prepared)
    assert found == sim / "labels.json"
    assert read_label_names(found)[12] == "fetal_head"
    (prepared / "dataset.json").write_text(json.dumps({"source": f"dataset spec {sim / 'sonoshift_spec.yaml'}"}))
    assert find_labels_json(prepared) == sim / "labels.json"  # the path inside a phrase, as `prepare` writes it
    (prepared / "labels.json").write_text(json.dumps(["bg", "x"]))
    assert find_labels_json(prepared) == prepared / "labels.json"
    (prepared / "labels.json").write_text("{broken")
    with pytest.raises(SonoshiftError, match="cannot be read"):
        read_label_names(prepared / "labels.json")


def test_default_groups_cover_the_simulator_classes():
    tissues = pytest.importorskip("sonoshift.sim.tissues")
    names = dict(enumerate(tissues.LABEL_NAMES))
    classes, lut = class_lookup(DEFAULT_GROUPS, names)
    merged = {n: classes[lut[i]] for i, n in names.items()}
    head = {n for n in names.values() if n in ("skull", "brain", "ventricles_csf", "thalami", "midline_falx")}
    assert {merged[n] for n in head} <= {"fetal_head"}
    for n in ("stomach", "spine", "femur", "heart", "liver", "lung", "fetal_soft_tissue"):
        if n in merged:
            assert merged[n] == "fetal_body", n
    if "amniotic_fluid" in merged:
        assert merged["amniotic_fluid"] == "fluid"
    if "placenta" in merged:
        assert merged["placenta"] == "placenta"
    assert merged.get("outside", "background") == "background"


def test_yaml_config_matches_dataclass_defaults():
    from pathlib import Path

    from sonoshift.config import load_config
    from sonoshift.downstream.target_segmenter import SegmenterConfig

    cfg = load_config(SegmenterConfig, Path(__file__).resolve().parents[1] / "configs" / "cpu" / "segmenter.yaml")
    assert cfg.classes == DEFAULT_GROUPS
