from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from sonoshift.data.manifests import read_manifest
from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.data.public import african_planes_spec, dedupe_by_content, fetal_planes_db_spec, hc18_spec
from sonoshift.data.resize import ResizeConfig
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc


def test_fetal_planes_semicolon_metadata(tmp_path: Path) -> None:
    """Without index.csv the official semicolon table is read (its header and cells carry trailing spaces)."""
    base = tmp_path / "fetal_planes_db"
    (base / "metadata").mkdir(parents=True)
    (base / "images").mkdir()
    (base / "metadata" / "FETAL_PLANES_DB_data.csv").write_text(
        "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train \n"
        "Patient00001_Plane1_1_of_2;1;Fetal brain;Trans-thalamic;Op1;Aloka;1 \n"
        "Patient00001_Plane1_2_of_2;1;Fetal brain;Trans-thalamic;Op1;Aloka;1 \n"
        "Patient00002_Plane2_1_of_1;2;Fetal abdomen;Not A Brain;Op2;Voluson E6;0 \n"
        "Patient00003_Plane2_1_of_1;3;Fetal femur;Not A Brain;Op2;Aloka;0 \n"  # image absent: skipped
        "Patient00004_Plane2_1_of_1;4;Other;Not A Brain;Op2;Aloka;0 \n"  # patient on two machines: dropped
        "Patient00004_Plane2_2_of_2;4;Other;Not A Brain;Op2;Voluson E6;0 \n"
    )
    for n in ("Patient00001_Plane1_1_of_2", "Patient00001_Plane1_2_of_2", "Patient00002_Plane2_1_of_1",
              "Patient00004_Plane2_1_of_1", "Patient00004_Plane2_2_of_2"):
        cv2.imwrite(str(base / "images" / f"{n}.png"), np.zeros((8, 8), np.uint8))
    spec = fetal_planes_db_spec(tmp_path)
    got = [(it.domain, it.patient_id, it.video_id, it.labels["plane"], it.labels["official_train"]) for it in spec.items]
    assert got == [
        ("Aloka", "00001", "Patient00001_Plane1_1_of_2", "Fetal brain", 1),
        ("Aloka", "00001", "Patient00001_Plane1_2_of_2", "Fetal brain", 1),
        ("Voluson E6", "00002", "Patient00002_Plane2_1_of_1", "Fetal abdomen", 0),
    ]
    # patient 4 stays dropped when only one of its machines is selected
    assert [it.patient_id for it in fetal_planes_db_spec(base, machines=["Voluson E6"]).items] == ["00002"]
    with pytest.raises(SonoshiftError, match="US_Machine 'Philips' is not in the table"):
        fetal_planes_db_spec(tmp_path, machines=["Philips"])
    with pytest.raises(SonoshiftError, match="does not exist"):
        fetal_planes_db_spec(tmp_path / "nowhere")


def test_dedupe_by_content(tmp_path: Path) -> None:
    for name, data in (("a", b"x"), ("b", b"y"), ("c", b"x"), ("d", b"x")):
        (tmp_path / name).write_bytes(data)
    kept, dropped = dedupe_by_content([tmp_path / n for n in "abcd"])
    assert kept == [tmp_path / "a", tmp_path / "b"]
    assert dropped == {tmp_path / "c": tmp_path / "a", tmp_path / "d": tmp_path / "a"}


@pytest.mark.realdata
def test_fetal_planes_db_real(shared_data: Path) -> None:
    spec = fetal_planes_db_spec(shared_data)
    counts = {d: sum(it.domain == d for it in spec.items) for d in spec.domains}
    assert counts == {"Aloka": 46, "Other": 31, "Voluson E6": 54, "Voluson S10": 12}  # README table
    table = pd.read_csv(shared_data / "fetal_planes_db" / "index.csv")
    by_name = table.set_index("Image_name")
    for it in spec.items:
        row = by_name.loc[it.video_id]
        assert it.domain == row["US_Machine"] and int(it.patient_id) == row["Patient_num"]
        assert it.labels["plane"] == row["Plane"] and it.path.is_file()
    assert len({it.patient_id for it in spec.items}) == table["Patient_num"].nunique() == 118


@pytest.mark.realdata
def test_african_planes_real(shared_data: Path) -> None:
    spec = african_planes_spec(shared_data)
    table = pd.read_csv(shared_data / "african_planes" / "African_train.csv")
    hashes = {}
    for name in table["Image_name"]:
        p = shared_data / "african_planes" / "images" / f"{name}.png"
        hashes[p] = hashlib.sha256(p.read_bytes()).hexdigest()
    kept_hashes = [hashes[it.path] for it in spec.items]
    assert len(set(kept_hashes)) == len(kept_hashes) == len(set(hashes.values()))  # one file per content
    assert len(spec.items) < len(table)  # the source has duplicates
    assert set(spec.domains) == {"Algeria", "Egypt", "Ghana", "Malawi", "Uganda"}
    for it in spec.items:
        assert it.patient_id.startswith(f"{it.domain}-")
    # the same Patient_num in two centres gives two different patients
    nums = {}
    for it in spec.items:
        nums.setdefault(it.patient_id.split("-")[1], set()).add(it.patient_id)
    assert any(len(v) > 1 for v in nums.values())


@pytest.mark.realdata
def test_hc18_real(shared_data: Path) -> None:
    spec = hc18_spec(shared_data)
    assert len(spec.items) == 250 and spec.domains == ["hc18"]
    table = pd.read_csv(shared_data / "hc18" / "included_subset.csv").set_index("filename")
    for it in spec.items:
        row = table.loc[it.path.name]
        assert it.labels["hc_mm"] == row["head circumference (mm)"]
        assert it.labels["pixel_size_mm"] == row["pixel size(mm)"]
        assert it.labels["ga_weeks"] == pytest.approx(ga_from_hc(row["head circumference (mm)"]), abs=1e-4)
        assert it.aligned["head_mask"].is_file() and it.patient_id == it.path.name.split("_")[0]


@pytest.mark.realdata
def test_hc18_prepared_mask_and_pixel_size(shared_data: Path, tmp_path: Path) -> None:
    """Prepared HC18: the head mask becomes class ids 0/1 and the pixel size follows the resize."""
    full = hc18_spec(shared_data)
    items = tuple(it for it in full.items if it.patient_id in {"000", "004", "010", "020", "030"})
    spec = type(full)(items=items, name="hc18-small", source=full.source)
    cfg = PrepareConfig(resize=ResizeConfig(size=64), split=type(PrepareConfig().split)(fractions=(0.6, 0.2, 0.2)))
    out = tmp_path / "hc"
    prepare(spec, out, cfg, progress=False)
    info = json.loads((out / "dataset.json").read_text())
    rows = [r for s in ("train", "val", "test") for r in read_manifest(out / f"manifest_{s}.csv")]
    assert len(rows) == len(items)
    for r in rows:
        lab = cv2.imread(str(out / r["label_path"]), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(lab)) == {0, 1}
        src = next(it for it in items if it.video_id == r["video_id"])
        v = info["videos"][f"hc18/{r['patient_id']}/{r['video_id']}"]
        y0, y1, x0, x1 = v["crop_bbox"]
        scale = 64 / max(y1 - y0, x1 - x0)
        assert float(r["pixel_size_mm"]) == pytest.approx(src.labels["pixel_size_mm"] / scale, rel=0.02)
        # the head keeps its area in mm^2 (within the mask) after crop and resize
        ann = cv2.imread(str(src.aligned["head_mask"]), cv2.IMREAD_GRAYSCALE) > 127
        area_src = ann.sum() * src.labels["pixel_size_mm"] ** 2
        area_out = lab.sum() * float(r["pixel_size_mm"]) ** 2
        assert area_out == pytest.approx(area_src, rel=0.1)


def test_cli_prepare_public_fetal_planes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`sonoshift prepare --public fetal_planes_db` on a tiny stand-in folder (index.csv + sector images)."""
    from prep_synth import make_video

    from sonoshift.cli.main import main

    base = tmp_path / "data" / "fetal_planes_db"
    (base / "images").mkdir(parents=True)
    lines = ["Image_name,Patient_num,Plane,Brain_plane,Operator,US_Machine,Train,path"]
    for k, machine in enumerate(("Aloka", "Voluson E6", "Other")):
        for p in range(3):
            num = 10 * k + p + 1
            name = f"Patient{num:05d}_Plane1_1_of_1"
            cv2.imwrite(str(base / "images" / f"{name}.png"), make_video(1, seed=num)[0])
            lines.append(f"{name},{num},Fetal brain,Trans-thalamic,Op,{machine},1,images/{name}.png")
    (base / "index.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "prepared"
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--public", "fetal_planes_db", "--data-root", str(tmp_path / "data"),
              "--domains", "Aloka,Voluson E6", "-o", str(out), "-q", "resize.size=32"])
    assert e.value.code == 0, capsys.readouterr().err
    info = json.loads((out / "dataset.json").read_text())
    assert info["domains"] == ["Aloka", "Voluson E6"] and info["planes"] == ["Fetal brain"]
    rows = [r for s in ("train", "val", "test") for r in read_manifest(out / f"manifest_{s}.csv")]
    assert sorted(r["patient_id"] for r in rows) == ["00001", "00002", "00003", "00011", "00012", "00013"]
    assert all(r["brain_plane"] == "Trans-thalamic" and r["official_train"] == "1" for r in rows)
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--public", "hc18", "--data-root", str(tmp_path / "data"), "-o", str(tmp_path / "o2"), "-q"])
    assert e.value.code == 1 and "hc18" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
