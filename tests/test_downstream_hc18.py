"""HC18 head segmenter (fake HC18 folder + the real one) and head proxies on FETAL_PLANES_DB-like data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.special import ellipe
from skimage.draw import ellipse as draw_ellipse

from sonoshift.downstream.ellipse import head_measurements
from sonoshift.downstream.hc18 import (
    Hc18Config,
    head_proxies,
    load_hc18_table,
    split_subjects,
    subject_share,
    train_hc18_segmenter,
)
from sonoshift.downstream.head_eval import evaluate_heads_fpdb, evaluate_heads_run, fpdb_transthalamic, summarize_heads
from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig, load_segmenter
from sonoshift.downstream.synthetic import ellipse_images
from sonoshift.errors import SonoshiftError
from sonoshift.io.labels import read_labels


def make_hc18(root: Path, n: int = 24) -> Path:
    """A fake HC18 folder: 40x48 images (not square, like HC18's 800x540), RGB 0/255 filled-ellipse annotations
    drawn by scikit-image from known semi-axes, and HC = the analytic perimeter of that ellipse (complete elliptic
    integral, scipy) x pixel size, as HC18's table gives the annotated ellipse's perimeter."""
    ts = root / "training_set"
    ts.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        a = rng.uniform(9, 15)
        b = a * rng.uniform(0.65, 0.95)
        cy, cx, rot = 20 + rng.uniform(-2, 2), 24 + rng.uniform(-3, 3), rng.uniform(-np.pi, np.pi)
        mask = np.zeros((40, 48), np.uint8)
        mask[draw_ellipse(cy, cx, a, b, shape=mask.shape, rotation=rot)] = 1
        inner = np.zeros_like(mask)
        inner[draw_ellipse(cy, cx, a - 2, b - 2, shape=mask.shape, rotation=rot)] = 1
        base = np.where(inner > 0, 90.0, np.where(mask > 0, 200.0, 50.0))
        img = np.clip(base * rng.rayleigh(0.8, base.shape) + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        name = f"{i // 2:03d}_HC.png" if i % 2 == 0 else f"{i // 2:03d}_2HC.png"
        Image.fromarray(img).save(ts / name)
        Image.fromarray(np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)).save(
            ts / name.replace(".png", "_Annotation.png"))
        px = 0.1 + 0.01 * i
        perimeter = 4 * a * ellipe(1 - (b / a) ** 2)
        rows.append({"filename": name, "pixel size(mm)": px, "head circumference (mm)": perimeter * px,
                     "annotation_file": name.replace(".png", "_Annotation.png")})
    rows.append({"filename": "999_HC.png", "pixel size(mm)": 0.1, "head circumference (mm)": 50.0,
                 "annotation_file": "999_HC_Annotation.png"})  # listed but absent: skipped
    pd.DataFrame(rows).to_csv(root / "included_subset.csv", index=False)
    return root


def test_load_hc18_table_and_subject_split(tmp_path):
    table = load_hc18_table(make_hc18(tmp_path / "hc18"))
    assert len(table) == 24 and table["subject"].nunique() == 12
    assert table.loc[1, "subject"] == "000" and table.loc[1, "filename"] == "000_2HC.png"
    val = split_subjects(table["subject"], 0.25, seed=3)
    assert not set(table.loc[val, "subject"]) & set(table.loc[~val, "subject"])  # no subject on both sides
    assert table.loc[val, "subject"].nunique() == 3
    np.testing.assert_array_equal(val, split_subjects(table["subject"], 0.25, seed=3))
    with pytest.raises(SonoshiftError, match="training_set"):
        load_hc18_table(tmp_path / "missing")


def test_subject_share_is_nested_seeded_and_subject_whole():
    subjects = pd.Series([f"{i // 2:03d}" for i in range(40)])  # 20 subjects, two images each
    half, most = subject_share(subjects, 0.5, 0), subject_share(subjects, 0.75, 0)
    assert subjects[half].nunique() == 10 and subjects[most].nunique() == 15
    assert set(subjects[half]) <= set(subjects[most])  # nested: a learning curve adds subjects, never swaps them
    assert not set(subjects[half]) & set(subjects[~half])  # a subject's images stay together
    assert set(subjects[half]) != set(subjects[subject_share(subjects, 0.5, 1)])
    assert subject_share(subjects, 1.0, 0).all() and subjects[subject_share(subjects, 0.01, 0)].nunique() == 1


def test_train_fraction_trains_on_fewer_subjects_and_keeps_the_held_out_ones(tmp_path):
    data = make_hc18(tmp_path / "hc18")
    small = dict(image_size=32, val_fraction=0.25, model=ModelConfig(channels=(8, 16), strides=(2,), num_res_units=0),
                 train=SegmenterTrainConfig(steps=2, batch_size=4))
    full, _ = train_hc18_segmenter(Hc18Config(data_dir=str(data), **small), tmp_path / "a", progress=False)
    half, _ = train_hc18_segmenter(Hc18Config(data_dir=str(data), train_fraction=0.5, **small), tmp_path / "b",
                                   progress=False)
    assert full.info["train_images"] == 18 and half.info["train_images"] == 8  # 9 training subjects -> round(4.5) = 4
    assert half.info["val_files"] == full.info["val_files"]
    with pytest.raises(SonoshiftError, match="train_fraction"):
        Hc18Config(train_fraction=0.0)


def test_train_hc18_segmenter_validates_dice_and_hc(tmp_path):
    cfg = Hc18Config(
        data_dir=str(make_hc18(tmp_path / "hc18")), image_size=32, val_fraction=0.25,
        model=ModelConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=0),
        train=SegmenterTrainConfig(steps=40, batch_size=4, lr=5e-3, noise_std=0.0, intensity_jitter=0.05),
    )
    seg, val = train_hc18_segmenter(cfg, tmp_path / "ckpt", progress=False)
    assert len(val) == 6 and set(val["filename"]) == set(seg.info["val_files"])
    assert val["dice"].mean() > 0.7
    # The ellipse fitted to each reference mask reproduces the analytic HC of the ellipse it was drawn from.
    np.testing.assert_allclose(val["hc_ref_fit_mm"], val["hc_mm"], rtol=0.03)
    assert val["hc_abs_err_mm"].median() < 0.25 * val["hc_mm"].median()
    v = seg.info["validation"]
    assert v["dice_mean"] == pytest.approx(val["dice"].mean())
    saved = pd.read_csv(tmp_path / "ckpt" / "validation.csv")
    np.testing.assert_allclose(saved["dice"], val["dice"])
    assert load_segmenter(tmp_path / "ckpt").classes == ("background", "head")


def make_fpdb(root: Path) -> Path:
    """A fake FETAL_PLANES_DB: trans-thalamic heads from two machines plus one abdomen that must be left out."""
    fp = root / "fetal_planes_db"
    (fp / "images").mkdir(parents=True)
    rng = np.random.default_rng(5)
    rows = []
    for i, (machine, plane, bp) in enumerate([("Aloka", "Fetal brain", "Trans-thalamic"),
                                             ("Voluson E6", "Fetal brain", "Trans-thalamic"),
                                             ("Voluson E6", "Fetal brain", "Trans-thalamic"),
                                             ("Aloka", "Fetal abdomen", "Not A Brain")]):
        img, _ = ellipse_images(1, 40, rng)
        Image.fromarray(img[0]).save(fp / "images" / f"P{i}.png")
        rows.append({"Image_name": f"P{i}", "Patient_num": i, "Plane": plane, "Brain_plane": bp, "Operator": "x",
                     "US_Machine": machine, "Train": 1, "path": f"images/P{i}.png"})
    pd.DataFrame(rows).to_csv(fp / "index.csv", index=False)
    return root


@pytest.fixture(scope="module")
def head_seg(tmp_path_factory):
    base = tmp_path_factory.mktemp("heads")
    cfg = Hc18Config(data_dir=str(make_hc18(base / "hc18")), image_size=32, val_fraction=0.0,
                     model=ModelConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=0),
                     train=SegmenterTrainConfig(steps=30, batch_size=4, lr=5e-3, noise_std=0.0))
    train_hc18_segmenter(cfg, base / "ckpt", progress=False)
    return base / "ckpt"


def test_head_proxies_per_machine_on_fake_fpdb(tmp_path, head_seg):
    root = make_fpdb(tmp_path)
    items = fpdb_transthalamic(root)
    assert len(items) == 3 and sorted(items["machine"].unique()) == ["Aloka", "Voluson E6"]
    table = evaluate_heads_fpdb(root, head_seg, tmp_path / "out" / "heads.csv", crop=False, progress=False)
    assert len(table) == 3 and set(table["variant"]) == {"raw"}
    for _, r in table.iterrows():
        mask = read_labels(tmp_path / "out" / r["pred_path"]) > 0
        assert mask.shape == (40, 40)
        assert r["area_fraction"] == pytest.approx(mask.mean())
        if r["head_found"]:
            assert 0 < r["ellipse_iou"] <= 1 and r["hc_frac"] == pytest.approx(r["hc_px"] / 160)
    summary = summarize_heads(table)
    assert list(summary["images"]) == [1, 2]
    assert pd.read_csv(tmp_path / "out" / "heads.csv")["pred_path"].tolist() == table["pred_path"].tolist()
    both = evaluate_heads_fpdb(root, head_seg, tmp_path / "out2" / "heads.csv", progress=False)
    assert sorted(both.groupby("variant").size().items()) == [("cropped", 3), ("raw", 3)]


def test_head_proxies_on_a_run_with_plane_filter(tmp_path, head_seg):
    prepared = tmp_path / "prepared"
    run = tmp_path / "run"
    rng = np.random.default_rng(9)
    man, outs = [], []
    for i, plane in enumerate(["brain", "abdomen", "brain"]):
        img, _ = ellipse_images(1, 32, rng)
        (prepared / "frames").mkdir(parents=True, exist_ok=True)
        (run / "outputs").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(prepared / "frames" / f"{i}.png")
        Image.fromarray(255 - img[0]).save(run / "outputs" / f"{i}.png")
        man.append({"path": f"frames/{i}.png", "plane": plane})
        outs.append({"output_path": f"outputs/{i}.png", "source_path": f"frames/{i}.png", "label_path": "",
                     "patient_id": f"p{i}", "video_id": "v", "frame_index": 0})
    pd.DataFrame(man).to_csv(prepared / "manifest_test.csv", index=False)
    pd.DataFrame(outs).to_csv(run / "outputs.csv", index=False)
    (run / "run.json").write_text(json.dumps({"dataset": str(prepared), "source_domain": "Aloka"}))
    table = evaluate_heads_run(run, head_seg, plane_contains="Brain", progress=False)
    assert len(table) == 4 and set(table["variant"]) == {"source", "harmonized"}
    assert set(table["group"]) == {"Aloka"} and (run / "heads.csv").is_file()
    with pytest.raises(SonoshiftError, match="no frames"):
        evaluate_heads_run(run, head_seg, plane_contains="femur", progress=False)


def test_head_proxies_return_masks_at_frame_size(head_seg):
    seg = load_segmenter(head_seg)
    out = head_proxies(seg, [np.zeros((30, 50), np.uint8)])
    assert out[0]["mask"].shape == (30, 50)


def test_real_hc18_table_and_reference_ellipses(shared_data):
    """On the real HC18 files the annotation's fitted ellipse reproduces the official HC (an independent check)."""
    table = load_hc18_table(shared_data / "hc18")
    assert len(table) == 250 and table["pixel_size_mm"].between(0.03, 0.5).all()
    for _, r in table.iloc[::50].iterrows():
        m = read_labels(r["mask_path"]) > 127
        assert head_measurements(m, r["pixel_size_mm"])["hc_mm"] == pytest.approx(r["hc_mm"], rel=0.03)


def test_real_fpdb_transthalamic_selection(shared_data):
    items = fpdb_transthalamic(shared_data)
    assert len(items) == 36
    assert items.groupby("machine").size().to_dict() == {"Aloka": 10, "Other": 7, "Voluson E6": 13, "Voluson S10": 6}


def test_cli_train_hc18_heads_and_predict(tmp_path):
    from typer.testing import CliRunner

    from sonoshift.cli.main import app

    make_hc18(tmp_path / "data" / "hc18", n=12)
    make_fpdb(tmp_path / "data")
    runner = CliRunner()
    tiny = ["--set", "image_size=32", "--set", "model.channels=[8,16,32]", "--set", "model.strides=[2,2]",
            "--set", "model.num_res_units=0", "--set", "train.steps=5", "--set", "train.batch_size=4"]
    res = runner.invoke(app, ["segment", "train-hc18", "-o", str(tmp_path / "ckpt"), "--data-root",
                              str(tmp_path / "data"), "--device", "cpu", *tiny])
    assert res.exit_code == 0, res.output
    assert "held-out" in res.output and (tmp_path / "ckpt" / "validation.csv").is_file()
    res = runner.invoke(app, ["segment", "heads", "--segmenter", str(tmp_path / "ckpt"), "-o", str(tmp_path / "heads"),
                              "--data-root", str(tmp_path / "data")])
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(tmp_path / "heads" / "heads_summary.csv")
    assert set(summary["group"]) == {"Aloka", "Voluson E6"} and set(summary["variant"]) == {"raw", "cropped"}
    res = runner.invoke(app, ["segment", "predict", str(tmp_path / "ckpt"), str(tmp_path / "data" / "fetal_planes_db"
                                                                              / "images"), "-o", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    masks = sorted((tmp_path / "m").glob("*.png"))
    assert [m.name for m in masks] == [f"P{i}.png" for i in range(4)]
    assert read_labels(masks[0]).shape == (40, 40)
