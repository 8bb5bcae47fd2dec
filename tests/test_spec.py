from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sonoshift.data.spec import (
    SPEC_FILENAME,
    SpecItem,
    check_patients,
    is_label_name,
    load_spec,
    patient_from_name,
    resolve_inputs,
    resolve_patient_id,
    spec_from_folders,
)
from sonoshift.errors import SonoshiftError


def _touch_png(path: Path) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))


def test_folders_one_domain_each(tmp_path: Path) -> None:
    a, b = tmp_path / "handheld", tmp_path / "cart"
    _touch_png(a / "Patient00012_Plane1_1_of_2.png")
    np.save(a / "p2.npy", np.zeros((3, 8, 8), np.uint8))
    (a / "notes.txt").write_text("x")
    _touch_png(a / ".hidden.png")
    _touch_png(b / "clip7" / "f1.png")  # a folder of frames is one item
    _touch_png(b / "clip7" / "f2.png")
    spec = spec_from_folders([a, b])
    assert spec.domains == ["handheld", "cart"]
    names = [(it.domain, it.path.name, it.video_id) for it in spec.items]
    assert names == [
        ("handheld", "Patient00012_Plane1_1_of_2.png", "Patient00012_Plane1_1_of_2"),
        ("handheld", "p2.npy", "p2"),
        ("cart", "clip7", "clip7"),
    ]
    assert all(it.path.is_absolute() and it.patient_id is None for it in spec.items)


def test_folders_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _touch_png(tmp_path / "ok" / "x.png")
    with pytest.raises(SonoshiftError, match="does not exist"):
        spec_from_folders([tmp_path / "ok", tmp_path / "missing"])
    with pytest.raises(SonoshiftError, match=r"empty.*holds no videos"):
        spec_from_folders([tmp_path / "ok", tmp_path / "empty"])
    with pytest.raises(SonoshiftError, match="single folder"):
        resolve_inputs([tmp_path / "ok"])


def test_patient_id_precedence() -> None:
    item = SpecItem(path=Path("/d/Patient01234_Plane3_2_of_5.png"), domain="a", video_id="Patient01234_Plane3_2_of_5")
    assert patient_from_name(item.path.name, r"Patient(\d+)") == "01234"
    assert resolve_patient_id(item, None, None) == "01234"  # default pattern on the file name
    assert resolve_patient_id(item, "DCM9", None) == "DCM9"  # DICOM PatientID beats the pattern
    assert resolve_patient_id(item, "DOE^JOHN/1", None) == "DOE_JOHN_1"  # made folder-safe
    assert resolve_patient_id(item, "  ", None) == "01234"  # a blank DICOM id counts as absent
    spec_item = SpecItem(path=item.path, domain="a", patient_id="p01", video_id="v")
    assert resolve_patient_id(spec_item, "DCM9", None) == "p01"  # the spec beats DICOM
    plain = SpecItem(path=Path("/d/clip.mp4"), domain="a", video_id="clip")
    assert resolve_patient_id(plain, None, None) == "clip"  # no id anywhere: each file its own patient
    assert resolve_patient_id(plain, None, r"(cl)ip") == "cl"
    with pytest.raises(SonoshiftError, match="not a valid regular expression"):
        patient_from_name("x", "(")


def test_load_spec_yaml(tmp_path: Path) -> None:
    _touch_png(tmp_path / "videos" / "p01.png")
    np.save(tmp_path / "labels.npy", np.zeros((1, 8, 8), np.uint8))
    (tmp_path / "fl.csv").write_text("frame_index,plane\n0,head\n")
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "name": "study",
                "patient_pattern": r"p(\d+)",
                "items": [
                    {
                        "path": "videos/p01.png",
                        "domain": "handheld",
                        "labels": {"plane": "head", "ga_weeks": 24.3},
                        "frame_labels": "fl.csv",
                        "aligned": {"label_map": "labels.npy"},
                    }
                ],
            }
        )
    )
    spec = load_spec(spec_file)
    it = spec.items[0]
    assert spec.name == "study" and spec.patient_pattern == r"p(\d+)"
    assert it.path == (tmp_path / "videos" / "p01.png").resolve() and it.video_id == "p01"
    assert it.labels == {"plane": "head", "ga_weeks": 24.3}
    assert it.aligned == {"label_map": (tmp_path / "labels.npy").resolve()}
    assert it.frame_labels == (tmp_path / "fl.csv").resolve()
    # a folder holding sonoshift_spec.yaml is read through it
    (tmp_path / SPEC_FILENAME).write_text(spec_file.read_text())
    assert resolve_inputs([tmp_path]).items == spec.items


@pytest.mark.parametrize(
    "item, message",
    [
        ({"path": "missing.png", "domain": "a"}, "missing.png does not exist"),
        ({"path": "x.png"}, "has no 'domain'"),
        ({"path": "x.png", "domain": "a", "colour": 1}, "unknown key 'colour'"),
        ({"path": "x.png", "domain": "a/b"}, "domain name 'a/b'"),
        ({"path": "x.png", "domain": "a", "labels": {"plane": [1, 2]}}, "scalar values"),
        ({"path": "x.png", "domain": "a", "labels": {"ga_weeks": "abc"}},
         "item 0 label 'ga_weeks' must be a positive number, got 'abc'"),
        ({"path": "x.png", "domain": "a", "labels": {"ga_weeks": float("nan")}},
         "item 0 label 'ga_weeks' must be a positive number, got nan"),
        ({"path": "x.png", "domain": "a", "labels": {"pixel_size_mm": -0.1}},
         "item 0 label 'pixel_size_mm' must be a positive number, got -0.1"),
    ],
)
def test_load_spec_errors_name_the_file(tmp_path: Path, item: dict, message: str) -> None:
    _touch_png(tmp_path / "x.png")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"items": [item]}))
    with pytest.raises(SonoshiftError, match=message) as e:
        load_spec(f)
    assert str(f) in str(e.value)


def test_bad_yaml_and_names() -> None:
    assert is_label_name("label_map") and is_label_name("head_mask") and is_label_name("organ_labels")
    assert not is_label_name("gt_cart")
    check_patients({"p1": {"a"}, "p2": {"b"}}, "spec")
    with pytest.raises(SonoshiftError, match=r"patient 'p1' appears in two domains \('a' and 'b'\)"):
        check_patients({"p1": {"a", "b"}}, "spec")


def test_invalid_yaml_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("items: [unclosed\n")
    with pytest.raises(SonoshiftError, match="not valid YAML"):
        load_spec(f)
