"""Loose frames to predict on: image files, DICOM stills and cine loops (data/frame_inputs.py), the pixel size a
DICOM states, and the prediction commands that read them (classify predict, GA measurement)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from plane_data import CLASSES, prepared, trained  # noqa: F401 (fixtures)
from prep_synth import write_dicom
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.data.frame_inputs import FrameRef, dicom_pixel_size_mm, list_frames, pixel_sizes, read_frame
from sonoshift.errors import SonoshiftError


def frames(n: int, seed: int = 0, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


def region(dx_cm: float, dy_cm: float, box: tuple[int, int, int, int], *, units: int = 3, kind: int = 1) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType = 1, kind
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX, r.PhysicalDeltaY = dx_cm, dy_cm
    return r


def test_a_folder_lists_images_dicom_stills_and_every_cine_frame(tmp_path: Path) -> None:
    still, cine, png = frames(1, 1), frames(3, 2), frames(1, 3)[0]
    write_dicom(tmp_path / "b_still.dcm", still, "p")
    write_dicom(tmp_path / "c_cine.dcm", cine, "p")
    Image.fromarray(png).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    refs = list_frames([tmp_path])
    assert [(r.path.name, r.index) for r in refs] == [("a.png", None), ("b_still.dcm", None), ("c_cine.dcm", 0),
                                                      ("c_cine.dcm", 1), ("c_cine.dcm", 2)]
    got = [read_frame(r) for r in refs]
    for g, want in zip(got, [png, still[0], *cine]):
        np.testing.assert_array_equal(g, want)
    bare = tmp_path / "sub" / "IM0001"  # a DICOM without a suffix, given directly
    bare.parent.mkdir()
    write_dicom(bare, cine[:2], "p")
    assert [str(r) for r in list_frames([bare])] == [f"{bare}#0", f"{bare}#1"]
    np.testing.assert_array_equal(read_frame(FrameRef(bare, 1)), cine[1])
    with pytest.raises(SonoshiftError, match="has 3 frame\\(s\\); frame 5 does not exist"):
        read_frame(FrameRef(tmp_path / "c_cine.dcm", 5))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SonoshiftError, match="no image or DICOM files"):
        list_frames([tmp_path / "empty"])
    with pytest.raises(SonoshiftError, match="does not exist"):
        list_frames([tmp_path / "nowhere"])


def test_the_pixel_size_a_dicom_states(tmp_path: Path) -> None:
    def size(name: str, **extra) -> float | None:
        write_dicom(tmp_path / name, frames(1), "p", **extra)
        return dicom_pixel_size_mm(tmp_path / name)

    # ultrasound calibration in cm per pixel: 0.0154 cm = 0.154 mm
    assert size("r.dcm", SequenceOfUltrasoundRegions=[region(0.0154, 0.0154, (0, 0, 55, 39))]) == pytest.approx(0.154)
    # the largest 2D tissue region wins over a small one, over a Doppler one (data type 3) and over one in seconds
    many = [region(0.05, 0.05, (0, 0, 9, 9)), region(0.0210, 0.0210, (2, 2, 50, 35)),
            region(0.3, 0.3, (0, 0, 55, 39), kind=3), region(0.4, 0.4, (0, 0, 55, 39), units=4)]
    assert size("m.dcm", SequenceOfUltrasoundRegions=many) == pytest.approx(0.21)
    assert size("s.dcm", PixelSpacing=[0.25, 0.25]) == pytest.approx(0.25)  # Pixel Spacing is in mm already
    assert size("n.dcm") is None
    with pytest.raises(SonoshiftError, match="not square"):
        size("q.dcm", SequenceOfUltrasoundRegions=[region(0.02, 0.03, (0, 0, 55, 39))])


def test_pixel_sizes_come_from_the_table_then_the_option_then_the_dicom(tmp_path: Path) -> None:
    write_dicom(tmp_path / "cal.dcm", frames(2), "p", PixelSpacing=[0.3, 0.3])
    write_dicom(tmp_path / "raw.dcm", frames(1), "p")
    Image.fromarray(frames(1)[0]).save(tmp_path / "img.png")
    refs = list_frames([tmp_path])  # cal.dcm#0, cal.dcm#1, img.png, raw.dcm
    assert pixel_sizes(refs, {}, None) == ([0.3, 0.3, None, None], ["dicom", "dicom", "", ""])
    assert pixel_sizes(refs, {"img.png": 0.1}, 0.2) == ([0.2, 0.2, 0.1, 0.2], ["option", "option", "table", "option"])


def test_classify_predict_reads_a_cine_loop_frame_by_frame_like_its_pngs(trained, prepared, tmp_path: Path) -> None:
    loop = np.stack([np.asarray(Image.open(f)) for f in sorted((prepared / "frames" / "A").glob("*/*/00000.png"))[:4]])
    assert len(loop) == 4
    write_dicom(tmp_path / "loop.dcm", loop, "p")
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for k, f in enumerate(loop):
        Image.fromarray(f).save(pngs / f"{k}.png")
    r = CliRunner().invoke(app, ["classify", "predict", str(trained[1]), str(tmp_path / "loop.dcm"), "--no-crop",
                                 "-o", str(tmp_path / "d.csv")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["classify", "predict", str(trained[1]), str(pngs), "--no-crop",
                                 "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    d, p = pd.read_csv(tmp_path / "d.csv"), pd.read_csv(tmp_path / "p.csv")
    assert d["frame"].tolist() == list(range(len(loop))) and p["frame"].isna().all()
    assert set(d["path"]) == {str(tmp_path / "loop.dcm")}
    probs = [f"p_{c}" for c in CLASSES]
    np.testing.assert_allclose(d[probs].to_numpy(), p[probs].to_numpy(), atol=1e-6)
    assert d["pred"].tolist() == p["pred"].tolist()


def test_segment_predict_writes_a_label_map_per_cine_frame(tmp_path: Path) -> None:
    from sonoshift.downstream.segmenter import (
        ModelConfig,
        Segmenter,
        build_unet,
        load_segmenter,
        predict,
        save_segmenter,
    )
    from sonoshift.io.labels import read_labels

    torch.manual_seed(0)  # the untrained net's weights
    save_segmenter(Segmenter(model=build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2), classes=("bg", "head"),
                             image_size=32, config={"model": {"channels": [4, 8], "strides": [2]}}, info={}),
                   tmp_path / "seg")
    loop = frames(3, 5)
    (tmp_path / "in").mkdir()
    write_dicom(tmp_path / "in" / "sweep.dcm", loop, "p")
    Image.fromarray(loop[0]).save(tmp_path / "in" / "still.png")
    r = CliRunner().invoke(app, ["segment", "predict", str(tmp_path / "seg"), str(tmp_path / "in"),
                                 "-o", str(tmp_path / "maps")])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "maps").glob("*.png"))
    assert names == ["still.png", "sweep_00000.png", "sweep_00001.png", "sweep_00002.png"]
    net = load_segmenter(tmp_path / "seg")
    for k in range(3):  # each map is the segmenter's prediction for that frame alone
        np.testing.assert_array_equal(read_labels(tmp_path / "maps" / f"sweep_{k:05d}.png"), predict(net, [loop[k]])[0])
    maps = tmp_path / "maps"
    np.testing.assert_array_equal(read_labels(maps / "still.png"), read_labels(maps / "sweep_00000.png"))
    Image.fromarray(loop[1]).save(tmp_path / "sweep.png")  # sweep.png and a still sweep.dcm elsewhere would clash
    (tmp_path / "other").mkdir()
    write_dicom(tmp_path / "other" / "sweep.dcm", loop[:1], "p")
    r = CliRunner().invoke(app, ["segment", "predict", str(tmp_path / "seg"), str(tmp_path / "sweep.png"),
                                 str(tmp_path / "other"), "-o", str(tmp_path / "maps2")])
    assert r.exit_code != 0 and "both write the label map sweep.png" in str(r.exception)
    assert not (tmp_path / "maps2").exists()


def test_two_loops_read_in_turns_are_decoded_once_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the GA estimator's lanes read neighbouring loops' frames at the same time: frames of two loops in turns must
    # not decode either loop again for every frame
    import sonoshift.data.readers as readers

    a, b = frames(4, 7), frames(4, 8)
    write_dicom(tmp_path / "a.dcm", a, "p")
    write_dicom(tmp_path / "b.dcm", b, "p")
    calls: list[Path] = []
    real = readers.read_stack
    monkeypatch.setattr(readers, "read_stack", lambda p: calls.append(Path(p)) or real(p))
    for k in range(4):
        np.testing.assert_array_equal(read_frame(FrameRef(tmp_path / "a.dcm", k)), a[k])
        np.testing.assert_array_equal(read_frame(FrameRef(tmp_path / "b.dcm", k)), b[k])
    assert sorted(c.name for c in calls) == ["a.dcm", "b.dcm"]
