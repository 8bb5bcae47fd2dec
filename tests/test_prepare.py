from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from skimage.transform import downscale_local_mean

from prep_synth import make_video, write_dicom
from sonoshift.cli.main import main
from sonoshift.config import load_config
from sonoshift.data.manifests import read_manifest, read_pairs
from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.data.splits import read_splits
from sonoshift.errors import SonoshiftError

SPLITS = ("train", "val", "test")


def _cfg(*overrides: str) -> PrepareConfig:
    return load_config(PrepareConfig, None, ["resize.size=32", *overrides])


def make_domains(root: Path, lengths_a=(9, 7, 8, 6), lengths_b=(8, 10, 7)) -> list[Path]:
    """Two domain folders of .npy cine-loops named Patient<N>_clip.npy (sector + static overlay)."""
    a, b = root / "inputs" / "handheld", root / "inputs" / "cart"
    a.mkdir(parents=True), b.mkdir(parents=True)
    for i, t in enumerate(lengths_a):
        np.save(a / f"Patient{i:03d}_clip.npy", make_video(t, seed=i))
    for i, t in enumerate(lengths_b):
        np.save(b / f"Patient{100 + i:03d}_clip.npy", make_video(t, seed=100 + i))
    return [a, b]


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_prepare_two_domains(tmp_path: Path) -> None:
    folders = make_domains(tmp_path)
    out = tmp_path / "out"
    res = prepare(folders, out, _cfg(), progress=False)
    assert not res.reused
    info = json.loads((out / "dataset.json").read_text())
    assert info["domains"] == ["handheld", "cart"] and info["frame_size"] == [32, 32]
    assert info["frames_per_video"] == 6  # the minimum over all videos of both domains
    splits = read_splits(out / "splits.json")
    assert [len(splits["handheld"][s]) for s in SPLITS] == [2, 1, 1]
    assert [len(splits["cart"][s]) for s in SPLITS] == [1, 1, 1]
    for split in SPLITS:
        rows = read_manifest(out / f"manifest_{split}.csv")
        for d in ("handheld", "cart"):
            drows = [r for r in rows if r["domain"] == d]
            assert {r["patient_id"] for r in drows} == set(splits[d][split])  # manifest follows splits.json
            assert info["counts"][split][d] == len(drows) == 6 * len(splits[d][split])
            cache = np.load(out / "cache" / split / f"{d}.npy", mmap_mode="r")
            masks = np.load(out / "cache" / split / f"{d}.mask.npy", mmap_mode="r")
            assert cache.shape == (len(drows), 32, 32) and cache.dtype == np.uint8
            for k, r in enumerate(drows):  # cache rows are the PNGs, in manifest order
                np.testing.assert_array_equal(cache[k], cv2.imread(str(out / r["path"]), cv2.IMREAD_UNCHANGED))
                m = cv2.imread(str(out / r["mask_path"]), cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(masks[k], m)
                assert set(np.unique(m)) <= {0, 255} and (cache[k][m == 0] == 0).all()
        for vid in {(r["patient_id"], r["video_id"]) for r in rows}:
            idx = [int(r["frame_index"]) for r in rows if (r["patient_id"], r["video_id"]) == vid]
            assert len(idx) == 6 and idx == sorted(set(idx))
        pairs = read_pairs(out / f"pairs_{split}.csv")
        src = sorted(r["path"] for r in rows if r["domain"] == "handheld")
        assert [p["source_path"] for p in pairs] == src
        assert {p["target_path"] for p in pairs} <= {r["path"] for r in rows if r["domain"] == "cart"}
    # the patient id came from the default file-name pattern
    assert sorted(splits["cart"]["train"] + splits["cart"]["val"] + splits["cart"]["test"]) == ["100", "101", "102"]
    assert not list(tmp_path.glob(".out.tmp-*")) and not (out / ".staging").exists()


def test_same_seed_same_output(tmp_path: Path) -> None:
    folders = make_domains(tmp_path)
    prepare(folders, tmp_path / "o1", _cfg(), progress=False)
    prepare(folders, tmp_path / "o2", _cfg(), progress=False)
    for name in ("splits.json", "manifest_train.csv", "pairs_train.csv", "manifest_test.csv"):
        assert (tmp_path / "o1" / name).read_text() == (tmp_path / "o2" / name).read_text()
    np.testing.assert_array_equal(
        np.load(tmp_path / "o1" / "cache" / "train" / "handheld.npy"),
        np.load(tmp_path / "o2" / "cache" / "train" / "handheld.npy"),
    )
    prepare(folders, tmp_path / "o3", _cfg("frames.seed=5"), progress=False)
    a = [r["frame_index"] for r in read_manifest(tmp_path / "o1" / "manifest_train.csv")]
    b = [r["frame_index"] for r in read_manifest(tmp_path / "o3" / "manifest_train.csv")]
    assert a != b


def test_reuse_and_refuse_different_dataset(tmp_path: Path) -> None:
    folders = make_domains(tmp_path)
    out = tmp_path / "out"
    prepare(folders, out, _cfg(), progress=False)
    before = snapshot(out)
    again = prepare(folders, out, _cfg(), progress=False)
    assert again.reused and snapshot(out) == before  # same dataset: reused, nothing rewritten
    with pytest.raises(SonoshiftError, match="another configuration"):
        prepare(folders, out, _cfg("resize.size=16"), progress=False)
    np.save(folders[0] / "Patient009_clip.npy", make_video(6, seed=9))
    with pytest.raises(SonoshiftError, match="already holds a different dataset"):
        prepare(folders, out, _cfg(), progress=False)
    assert snapshot(out) == before
    # splits are reused from a file when asked, whatever else changes
    prepare(folders, tmp_path / "o2", _cfg("split.seed=4"), progress=False)
    s2 = read_splits(tmp_path / "o2" / "splits.json")
    prepare(folders, tmp_path / "o3", _cfg(f"split.file={tmp_path / 'o2' / 'splits.json'}", "resize.size=16"), progress=False)
    assert read_splits(tmp_path / "o3" / "splits.json") == s2
    # a leaky split file is refused with the patient named
    leaky = dict(s2)
    leaky["cart"] = {"train": ["100", "101"], "val": ["101"], "test": ["102"]}
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    with pytest.raises(SonoshiftError, match="patient '101' leaks"):
        prepare(folders, tmp_path / "o4", _cfg(f"split.file={tmp_path / 'leaky.json'}"), progress=False)
    assert not (tmp_path / "o4").exists()


def test_spec_with_aligned_stacks_and_labels(tmp_path: Path) -> None:
    """Aligned stacks get the item's crop, frame selection and resize; label maps nearest, images area."""
    rng = np.random.default_rng(0)
    items = []
    # paired data (as the simulator writes it): the same patients and sweeps seen by two scanner profiles
    for dom, pids in (("handheld", ("p1", "p2", "p3")), ("cart", ("p1", "p2", "p3"))):
        for k, pid in enumerate(pids):
            t = 4 + k
            img = rng.integers(1, 255, size=(t, 64, 64), dtype=np.uint8)
            lab = rng.integers(0, 4, size=(t, 64, 64), dtype=np.uint8)
            gt = rng.integers(0, 255, size=(t, 64, 64), dtype=np.uint8)
            for name, arr in (("img", img), ("lab", lab), ("gt", gt)):
                np.save(tmp_path / f"{pid}_{dom}_{name}.npy", arr)
            (tmp_path / f"{pid}_planes.csv").write_text("frame_index,plane\n" + "".join(f"{j},p{j % 2}\n" for j in range(t)))
            items.append({
                "path": f"{pid}_{dom}_img.npy", "domain": dom, "patient_id": pid, "video_id": f"sweep_{dom}",
                "labels": {"ga_weeks": 20 + k, "pixel_size_mm": 0.5}, "frame_labels": f"{pid}_planes.csv",
                "aligned": {"label_map": f"{pid}_{dom}_lab.npy", "gt_cart": f"{pid}_{dom}_gt.npy"},
            })
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "sim", "paired": True, "items": items}))
    out = tmp_path / "out"
    prepare([tmp_path / "spec.yaml"], out, _cfg("crop.method=none", "resize.mode=stretch"), progress=False)
    info = json.loads((out / "dataset.json").read_text())
    assert info["frames_per_video"] == 4 and info["aligned"] == {"label_map": "label", "gt_cart": "image"}
    assert info["planes"] == ["p0", "p1"]
    checked = 0
    for split in SPLITS:
        rows = read_manifest(out / f"manifest_{split}.csv")
        for r in rows:
            pid, j, dom = r["patient_id"], int(r["frame_index"]), r["domain"]
            lab = np.load(tmp_path / f"{pid}_{dom}_lab.npy")[j]
            gt = np.load(tmp_path / f"{pid}_{dom}_gt.npy")[j]
            img = np.load(tmp_path / f"{pid}_{dom}_img.npy")[j]
            got_lab = cv2.imread(str(out / r["label_path"]), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(got_lab, lab[::2, ::2])  # nearest 2x down-sampling keeps class ids
            got_gt = cv2.imread(str(out / r["gt_cart_path"]), cv2.IMREAD_UNCHANGED).astype(float)
            assert np.abs(got_gt - downscale_local_mean(gt, (2, 2))).max() <= 1.0  # area = 2x2 mean
            got_img = cv2.imread(str(out / r["path"]), cv2.IMREAD_UNCHANGED).astype(float)
            assert np.abs(got_img - downscale_local_mean(img, (2, 2))).max() <= 1.0
            assert r["plane"] == f"p{j % 2}"  # per-frame label from the CSV
            assert float(r["pixel_size_mm"]) == pytest.approx(1.0)  # 0.5 mm per source px, 2x down -> 1.0
            assert float(r["ga_weeks"]) == 20 + int(pid[1]) - 1
            checked += 1
        # paired: each source frame goes with the target frame of the same patient, sweep and frame index
        pairs = read_pairs(out / f"pairs_{split}.csv")
        assert len(pairs) == sum(r["domain"] == "handheld" for r in rows) > 0
        for p in pairs:
            assert p["target_path"] == p["source_path"].replace("handheld", "cart")
        lab_cache = np.load(out / "cache" / split / "handheld.label_map.npy")
        assert lab_cache.shape[0] == sum(r["domain"] == "handheld" for r in rows)
    assert checked == 24
    splits = read_splits(out / "splits.json")
    assert splits["handheld"] == splits["cart"]  # paired patients are split jointly


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    folders = make_domains(tmp_path)
    (folders[1] / "Patient107_clip.npy").write_bytes(b"\x93NUMPY garbage")
    parent = tmp_path / "outs"
    parent.mkdir()
    with pytest.raises(SonoshiftError, match="Patient107_clip.npy"):
        prepare(folders, parent / "out", _cfg(), progress=False)
    assert list(parent.iterdir()) == []


# ----------------------------------------------------------------------------------------- CLI bad input


def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _break(kind: str, folders: list[Path], tmp: Path) -> list[str]:
    """Damage a good two-domain input in one way; returns the CLI inputs."""
    a, b = folders
    if kind == "missing folder":
        return [str(a), str(tmp / "nope")]
    if kind == "empty folder":
        (tmp / "empty").mkdir()
        return [str(a), str(tmp / "empty")]
    if kind == "corrupt video":
        (b / "Patient150_clip.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "dicom without pixel data":
        write_dicom(b / "clip.dcm", make_video(6, 1), "P77", pixel_data=False)
    elif kind == "16-bit image":
        _png(b / "Patient151.png", np.full((96, 128), 1000, np.uint16))
    elif kind == "rgba image":
        _png(b / "Patient152.png", np.zeros((96, 128, 4), np.uint8))
    elif kind == "patient in two domains":
        np.save(b / "Patient001_other.npy", make_video(6, seed=1))
    elif kind == "too few patients":
        (b / "Patient102_clip.npy").unlink()
    return [str(a), str(b)]


BAD = ["missing folder", "empty folder", "corrupt video", "dicom without pixel data", "16-bit image",
       "rgba image", "patient in two domains", "too few patients"]


@pytest.mark.parametrize("kind", BAD)
def test_cli_bad_input_one_line_exit_1(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folders = make_domains(tmp_path)
    inputs = _break(kind, folders, tmp_path)
    outs = tmp_path / "outs"
    outs.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["prepare", *inputs, "-o", str(outs / "ds"), "-q", "resize.size=16"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert list(outs.iterdir()) == []  # nothing half-written
    expected = {
        "missing folder": "nope does not exist", "empty folder": "holds no videos",
        "corrupt video": "Patient150_clip.mp4", "dicom without pixel data": "clip.dcm",
        "16-bit image": "Patient151.png", "rgba image": "Patient152.png",
        "patient in two domains": "patient '001' appears in two domains", "too few patients": "domain 'cart'",
    }[kind]
    assert expected in err


@pytest.mark.parametrize("where", ["spec", "frame label file"])
def test_cli_non_numeric_ga_label_is_refused_before_writing(where: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    items = []
    for k in range(3):
        _png(tmp_path / f"Patient{k}.png", np.full((32, 32), 80 + k, np.uint8))
        item = {"path": f"Patient{k}.png", "domain": "a", "labels": {"ga_weeks": 20 + k}}
        if where == "spec" and k == 1:
            item["labels"] = {"ga_weeks": "abc"}
        if where == "frame label file" and k == 2:
            (tmp_path / "fl.csv").write_text("frame_index,ga_weeks\n0,abc\n")
            item["frame_labels"] = "fl.csv"
        items.append(item)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"items": items}))
    outs = tmp_path / "outs"
    outs.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["prepare", str(tmp_path / "spec.yaml"), "-o", str(outs / "ds"), "-q", "resize.size=16",
              "crop.method=none"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and "\n" not in err and "Traceback" not in err, err
    expected = {"spec": "spec.yaml item 1 label 'ga_weeks' must be a positive number, got 'abc'",
                "frame label file": "fl.csv frame 0 label 'ga_weeks' must be a positive number, got 'abc'"}[where]
    assert expected in err
    assert list(outs.iterdir()) == []


def test_cli_output_holds_different_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folders = make_domains(tmp_path)
    out = tmp_path / "ds"
    with pytest.raises(SystemExit) as ok:
        main(["prepare", *map(str, folders), "-o", str(out), "-q", "resize.size=16"])
    assert ok.value.code == 0 and "handheld" in capsys.readouterr().out
    before = snapshot(out)
    np.save(folders[1] / "Patient120_clip.npy", make_video(6, seed=3))
    with pytest.raises(SystemExit) as e:
        main(["prepare", *map(str, folders), "-o", str(out), "-q", "resize.size=16"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and "already holds a different dataset" in err and "\n" not in err
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "inputs"]


def test_cli_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    r = subprocess.run([sys.executable, "-m", "sonoshift", "prepare", str(tmp_path / "x"), str(tmp_path / "y"),
                        "-o", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: input folder {tmp_path / 'x'} does not exist."]
    assert not (tmp_path / "o").exists()


def test_simulator_output_is_accepted_unchanged(tmp_path: Path) -> None:
    """The simulator's folder (sonoshift_spec.yaml, paired: true) prepares with real pairs and aligned caches."""
    sim = pytest.importorskip("sonoshift.sim.simulate")
    src = tmp_path / "sim"
    sim.simulate(src, sim.SimConfig(patients=3, size=64, frames_per_sweep=3, sweeps=sim.SWEEPS[:1], contact_sheet=False),
                 progress=False)
    out = tmp_path / "prep"
    prepare([src], out, _cfg(), progress=False)
    splits = read_splits(out / "splits.json")
    assert splits["handheld"] == splits["cart"]
    for split in SPLITS:
        rows = read_manifest(out / f"manifest_{split}.csv")
        assert {r["patient_id"] for r in rows if r["domain"] == "handheld"} == set(splits["handheld"][split])
        by_key = {(r["domain"], r["patient_id"], r["video_id"], r["frame_index"]) for r in rows}
        for p in read_pairs(out / f"pairs_{split}.csv"):
            s_parts, t_parts = p["source_path"].split("/"), p["target_path"].split("/")
            assert s_parts[2:] == t_parts[2:]  # same patient, sweep and frame in both domains
        hh = [r for r in rows if r["domain"] == "handheld"]
        assert all(r["label_path"] and r["gt_cart_path"] for r in hh) and len(by_key) == len(rows)
        lab = np.load(out / "cache" / split / "handheld.label_map.npy")
        for k, r in enumerate(hh):
            np.testing.assert_array_equal(lab[k], cv2.imread(str(out / r["label_path"]), cv2.IMREAD_UNCHANGED))


def test_too_few_patients_found_before_decoding(tmp_path: Path) -> None:
    folders = make_domains(tmp_path, lengths_b=(8, 7))
    (folders[1] / "Patient101_clip.npy").write_bytes(b"not a numpy file")  # would fail if it were decoded
    with pytest.raises(SonoshiftError, match="domain 'cart': 2 patient\\(s\\) are too few for a 3-way split"):
        prepare(folders, tmp_path / "out", _cfg(), progress=False)
    # a two-way split (no validation set) accepts two patients
    prepare(make_domains(tmp_path / "two", lengths_b=(8, 7)), tmp_path / "o2", _cfg("split.fractions=[0.5,0,0.5]"),
            progress=False)
    assert json.loads((tmp_path / "o2" / "dataset.json").read_text())["counts"]["val"] == {"handheld": 0, "cart": 0}


def test_cli_config_file_and_overrides(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folders = make_domains(tmp_path)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"resize": {"size": 16, "mode": "stretch"}, "split": {"seed": 2}}))
    out = tmp_path / "ds"
    with pytest.raises(SystemExit) as e:
        main(["prepare", *map(str, folders), "-o", str(out), "-c", str(tmp_path / "cfg.yaml"), "-q", "split.seed=9"])
    assert e.value.code == 0
    cfg = json.loads((out / "dataset.json").read_text())["config"]
    assert cfg["resize"] == {"size": 16, "mode": "stretch"} and cfg["split"]["seed"] == 9  # override wins
    assert read_splits(out / "splits.json")["seed"] == 9
    with pytest.raises(SystemExit) as e:
        main(["prepare", *map(str, folders), "-o", str(tmp_path / "x"), "-q", "resize.sise=3"])
    assert e.value.code == 1 and "resize.sise" in capsys.readouterr().err
