"""Round trip: MP4 and multi-frame DICOM cine-loops with a burned-in overlay -> `sonoshift prepare` -> checks.

"The overlay did not survive" is measured geometrically: the crop's bounding box (in source pixels, from
dataset.json) must not intersect the burned-in text box, so no overlay pixel can reach a prepared frame; and
every prepared pixel outside the field-of-view mask is 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from prep_synth import OVERLAY, make_video, sector_mask, write_dicom, write_mp4
from sonoshift.cli.main import main
from sonoshift.data.manifests import BASE_COLUMNS, read_manifest, read_pairs
from sonoshift.data.splits import read_splits, split_counts

MP4_LENGTHS = (8, 11, 9, 12, 10, 9, 13)
DCM_LENGTHS = (12, 9, 14, 10, 11, 9, 10)


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("rt")
    a, b = root / "handheld", root / "cart"
    a.mkdir(), b.mkdir()
    sources = {}
    for i, t in enumerate(MP4_LENGTHS):
        v = make_video(t, seed=i)
        write_mp4(a / f"Patient{i:02d}_sweep.mp4", v)
        sources[("handheld", f"Patient{i:02d}_sweep")] = v
    for i, t in enumerate(DCM_LENGTHS):
        v = make_video(t, seed=100 + i)
        write_dicom(b / f"scan{i}.dcm", v, patient_id=f"C{i}")  # the patient comes from DICOM PatientID
        sources[("cart", f"scan{i}")] = v
    out = root / "prepared"
    with pytest.raises(SystemExit) as e:
        main(["prepare", str(a), str(b), "-o", str(out), "-q", "resize.size=48", "split.seed=1"])
    assert e.value.code == 0
    return out, root, sources


def _iou(b1: list[int], b2: tuple[int, int, int, int]) -> float:
    y0, y1 = max(b1[0], b2[0]), min(b1[1], b2[1])
    x0, x1 = max(b1[2], b2[2]), min(b1[3], b2[3])
    inter = max(0, y1 - y0) * max(0, x1 - x0)
    area = lambda b: (b[1] - b[0]) * (b[3] - b[2])  # noqa: E731
    return inter / (area(b1) + area(b2) - inter)


def test_crop_removes_overlay(roundtrip) -> None:
    out, _, _ = roundtrip
    info = json.loads((out / "dataset.json").read_text())
    ys, xs = np.nonzero(sector_mask())
    sector_box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    assert len(info["videos"]) == 14
    for key, v in info["videos"].items():
        bb = v["crop_bbox"]
        oy0, oy1, ox0, ox1 = OVERLAY
        assert bb[1] <= oy0 or bb[0] >= oy1 or bb[3] <= ox0 or bb[2] >= ox1, f"{key}: overlay inside crop {bb}"
        assert _iou(bb, sector_box) > 0.85, key
    for split in ("train", "val", "test"):
        for r in read_manifest(out / f"manifest_{split}.csv"):
            img = cv2.imread(str(out / r["path"]), cv2.IMREAD_UNCHANGED)
            m = cv2.imread(str(out / r["mask_path"]), cv2.IMREAD_UNCHANGED)
            assert img.shape == (48, 48) and (img[m == 0] == 0).all()


def test_frame_counts_and_content(roundtrip) -> None:
    out, _, sources = roundtrip
    info = json.loads((out / "dataset.json").read_text())
    n = min(MP4_LENGTHS + DCM_LENGTHS)
    assert info["frames_per_video"] == n
    rows = [r for s in ("train", "val", "test") for r in read_manifest(out / f"manifest_{s}.csv")]
    assert len(rows) == 14 * n
    by_video: dict = {}
    for r in rows:
        by_video.setdefault((r["domain"], r["video_id"]), []).append(int(r["frame_index"]))
    for (dom, vid), idx in by_video.items():
        total = len(sources[(dom, vid)])
        assert len(idx) == n and idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < total
    # prepared frames look like the source sector, resized (independent reference: skimage resize)
    for r in rows[:: n]:
        v = info["videos"][f"{r['domain']}/{r['patient_id']}/{r['video_id']}"]
        y0, y1, x0, x1 = v["crop_bbox"]
        src = sources[(r["domain"], r["video_id"])][int(r["frame_index"])][y0:y1, x0:x1].astype(float)
        s = 48 / max(y1 - y0, x1 - x0)
        ref = sk_resize(src, (round((y1 - y0) * s), round((x1 - x0) * s)), anti_aliasing=True)
        img = cv2.imread(str(out / r["path"]), cv2.IMREAD_UNCHANGED).astype(float)
        py, px = (48 - ref.shape[0]) // 2, (48 - ref.shape[1]) // 2
        got = img[py : py + ref.shape[0], px : px + ref.shape[1]]
        inside = got > 0
        assert np.corrcoef(got[inside], ref[inside])[0, 1] > 0.8
        # control: the same place in another patient's video does not correlate
        other = next(k for k in sources if k[0] == r["domain"] and k[1] != r["video_id"])
        wrong = sk_resize(sources[other][0][y0:y1, x0:x1].astype(float), ref.shape, anti_aliasing=True)
        assert abs(np.corrcoef(got[inside], wrong[inside])[0, 1]) < 0.5


def test_splits_and_manifests(roundtrip) -> None:
    out, _, _ = roundtrip
    splits = read_splits(out / "splits.json")  # leakage check
    assert sorted(p for s in ("train", "val", "test") for p in splits["cart"][s]) == [f"C{i}" for i in range(7)]
    for d in ("handheld", "cart"):
        assert tuple(len(splits[d][s]) for s in ("train", "val", "test")) == split_counts(7, (0.7, 0.15, 0.15))
    seen: dict = {}
    for split in ("train", "val", "test"):
        text = (out / f"manifest_{split}.csv").read_text().splitlines()
        assert text[0].split(",")[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
        for r in read_manifest(out / f"manifest_{split}.csv"):
            assert seen.setdefault(r["patient_id"], split) == split  # one split per patient
            assert r["patient_id"] in splits[r["domain"]][split]
            assert (out / r["path"]).is_file() and (out / r["mask_path"]).is_file()
        for p in read_pairs(out / f"pairs_{split}.csv"):
            assert (out / p["source_path"]).is_file() and (out / p["target_path"]).is_file()
            assert p["source_domain"] == "handheld" and p["target_domain"] == "cart"


def test_prepare_again_reuses(roundtrip, capsys: pytest.CaptureFixture) -> None:
    out, root, _ = roundtrip
    before = (out / "splits.json").stat().st_mtime_ns
    with pytest.raises(SystemExit) as e:
        main(["prepare", str(root / "handheld"), str(root / "cart"), "-o", str(out), "-q", "resize.size=48", "split.seed=1"])
    assert e.value.code == 0 and "reused" in capsys.readouterr().out
    assert (out / "splits.json").stat().st_mtime_ns == before
