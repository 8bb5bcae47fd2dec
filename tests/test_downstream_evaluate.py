"""Target-domain segmenter on a fake prepared dataset, and evaluate_segmentation on a fake translation run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from sonoshift.cli.main import app, main
from sonoshift.config import load_config
from sonoshift.downstream.evaluate_seg import evaluate_segmentation, summarize_segmentation
from sonoshift.io.images import read_gray
from sonoshift.downstream.segmenter import load_segmenter, predict
from sonoshift.downstream.synthetic import ellipse_images
from sonoshift.downstream.target_segmenter import SegmenterConfig, pick_domain, train_target_segmenter
from sonoshift.errors import SonoshiftError

SIZE = 32
LABELS = {"0": "background", "2": "amniotic_fluid", "5": "brain"}
OVERRIDES = [
    "domain=cart", f"image_size={SIZE}", "model.channels=[8,16,32]", "model.strides=[2,2]", "model.num_res_units=0",
    "train.steps=40", "train.batch_size=4", "train.lr=0.005", "train.noise_std=0", "train.intensity_jitter=0.05",
]


def _png(path: Path, a: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(path)
    return path


def _handheld_look(img: np.ndarray) -> np.ndarray:
    """A strong scanner shift: inverted, compressed contrast (what the target segmenter has never seen)."""
    return (255 - img.astype(np.float32)) * 0.5 + 40


def make_prepared(root: Path) -> Path:
    """A prepared dataset (docs/formats.md §2) with cart and handheld domains of the same anatomy per frame."""
    rows = []
    rng = np.random.default_rng(0)
    for split, n_pat in (("train", 8), ("val", 2), ("test", 2)):
        for p in range(n_pat):
            pid = f"{split}{p}"
            imgs, masks = ellipse_images(4, SIZE, rng)
            for f, (img, m) in enumerate(zip(imgs, masks)):
                lab = np.where(m > 0, 5, 0).astype(np.uint8)  # simulator ids: brain = 5
                lab[:3] = 2  # a thin amniotic-fluid band at the top
                fov = np.ones((SIZE, SIZE), np.uint8) * 255
                fov[:, :2] = 0  # the leftmost columns are outside the field of view
                for dom, look in (("cart", img), ("handheld", _handheld_look(img))):
                    rel = Path(dom) / pid / "sweep1" / f"{f:05d}.png"
                    _png(root / "frames" / rel, look)
                    _png(root / "aligned" / "label_map" / rel, lab)
                    _png(root / "masks" / rel, fov)
                    if dom == "handheld":
                        _png(root / "aligned" / "gt_cart" / rel, img)
                    rows.append({"split": split, "patient_id": pid, "domain": dom, "video_id": "sweep1",
                                 "frame_index": f, "path": f"frames/{rel.as_posix()}",
                                 "mask_path": f"masks/{rel.as_posix()}", "plane": "head", "ga_weeks": 20.0,
                                 "label_path": f"aligned/label_map/{rel.as_posix()}"})
    df = pd.DataFrame(rows)
    for split, part in df.groupby("split"):
        part.drop(columns="split").to_csv(root / f"manifest_{split}.csv", index=False)
    (root / "labels.json").write_text(json.dumps(LABELS))
    return root


def make_run(prepared: Path, run: Path, perfect: bool = True) -> Path:
    """A translation run of the handheld test frames; outputs are the cart ground truth (a perfect harmonizer)."""
    man = pd.read_csv(prepared / "manifest_test.csv", dtype={"patient_id": str})
    man = man[man["domain"] == "handheld"]
    rows = []
    for _, r in man.iterrows():
        gt = r["path"].replace("frames/handheld", "aligned/gt_cart/handheld")
        out_rel = f"outputs/{r['patient_id']}/{r['video_id']}/{int(r['frame_index']):05d}.png"
        src = read_gray(prepared / (gt if perfect else r["path"]))
        _png(run / out_rel, src)
        rows.append({"output_path": out_rel, "source_path": r["path"], "target_path": "", "gt_path": gt,
                     "mask_path": r["mask_path"], "label_path": r["label_path"], "patient_id": r["patient_id"],
                     "video_id": r["video_id"], "frame_index": r["frame_index"]})
    pd.DataFrame(rows).to_csv(run / "outputs.csv", index=False)
    (run / "run.json").write_text(json.dumps({"method": "fake", "dataset": str(prepared), "split": "test",
                                              "source_domain": "handheld", "target_domain": "cart"}))
    return run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("downstream")
    prepared = make_prepared(base / "prepared")
    cfg = load_config(SegmenterConfig, None, OVERRIDES)
    train_target_segmenter(prepared, base / "seg", cfg, progress=False)
    run = make_run(prepared, base / "run")
    return prepared, base / "seg", run


def test_target_segmenter_checkpoint_describes_itself(setup):
    _, ckpt, _ = setup
    seg = load_segmenter(ckpt)
    assert seg.classes == ("background", "fetal_head", "placenta", "fluid", "fetal_body")
    assert seg.info["domain"] == "cart" and seg.info["train_frames"] == 32 and seg.info["val_frames"] == 8
    lut = np.array(seg.info["label_lut"])
    assert lut[5] == 1 and lut[2] == 3 and lut[0] == 0
    assert seg.info["val_dice"]["fetal_head"] > 0.7
    assert np.isnan(seg.info["val_dice"]["placenta"])  # absent everywhere


def test_evaluate_segmentation_scores_source_harmonized_and_truth(setup, tmp_path):
    _, ckpt, run = setup
    out_csv = tmp_path / "seg.csv"
    table = evaluate_segmentation(run, ckpt, out_csv, progress=False)
    assert sorted(table["variant"].unique()) == ["ground_truth", "harmonized", "source"]
    assert len(table) == 3 * 8
    assert {"dice_mean", "hd95_mean", "dice_fetal_head", "hd95_fetal_head", "dice_fluid"} <= set(table.columns)
    back = pd.read_csv(out_csv)
    np.testing.assert_allclose(back["dice_fetal_head"], table["dice_fetal_head"])
    # A perfect harmonizer (outputs == ground truth) scores exactly like the ground truth...
    h = table[table.variant == "harmonized"].reset_index(drop=True)
    g = table[table.variant == "ground_truth"].reset_index(drop=True)
    np.testing.assert_array_equal(h["dice_fetal_head"], g["dice_fetal_head"])
    # ...and the unharmonized source frames (inverted look) are segmented clearly worse.
    assert h["dice_fetal_head"].mean() > 0.7
    assert table[table.variant == "source"]["dice_fetal_head"].mean() < h["dice_fetal_head"].mean() - 0.3
    summary = summarize_segmentation(table)
    assert len(summary) == 3 and "dice_fetal_head_mean" in summary.columns


def test_saved_masks_are_the_predictions_and_scores_recompute(setup, tmp_path):
    prepared, ckpt, run = setup
    table = evaluate_segmentation(run, ckpt, tmp_path / "seg.csv", progress=False)
    seg = load_segmenter(ckpt)
    lut = np.array(seg.info["label_lut"], dtype=np.uint8)
    row = table[table.variant == "harmonized"].iloc[0]
    mask = np.asarray(Image.open(tmp_path / row["pred_path"]))
    expected = predict(seg, [read_gray(row["image_path"])])[0]
    expected[:, :2] = 0  # outside the field of view
    np.testing.assert_array_equal(mask, expected)
    out = pd.read_csv(run / "outputs.csv", dtype={"patient_id": str})
    label = lut[np.asarray(Image.open(prepared / out.iloc[0]["label_path"]))]
    p, r = mask == 1, label == 1
    assert row["dice_fetal_head"] == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()))


def test_default_output_location_and_bad_runs(setup, tmp_path):
    _, ckpt, _ = setup
    with pytest.raises(SonoshiftError, match="no outputs.csv"):
        evaluate_segmentation(tmp_path, ckpt, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"output_path": ["a.png"], "source_path": ["b.png"]}).to_csv(bad / "outputs.csv", index=False)
    with pytest.raises(SonoshiftError, match="label_path"):
        evaluate_segmentation(bad, ckpt, progress=False)
    pd.DataFrame({"output_path": ["a.png"], "source_path": ["b.png"], "label_path": ["c.png"]}).to_csv(
        bad / "outputs.csv", index=False)
    with pytest.raises(SonoshiftError, match="does not exist"):
        evaluate_segmentation(bad, ckpt, progress=False)
    assert not (bad / "segmentation.csv").exists() and not (bad / "segmentation_masks").exists()


def test_pick_domain_rules():
    df = pd.DataFrame({"domain": ["a", "b"], "label_path": ["x.png", None]})
    assert pick_domain(df, "", "m.csv") == "a"
    assert pick_domain(df, "b", "m.csv") == "b"
    with pytest.raises(SonoshiftError, match="no domain 'c'"):
        pick_domain(df, "c", "m.csv")
    with pytest.raises(SonoshiftError, match="choose one"):
        pick_domain(pd.DataFrame({"domain": ["a", "b"], "label_path": ["x", "y"]}), "", "m.csv")


def test_cli_evaluate_and_errors(setup, tmp_path, capsys):
    _, ckpt, run = setup
    runner = CliRunner()
    res = runner.invoke(app, ["segment", "evaluate", str(run), "--segmenter", str(ckpt), "-o", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    assert "harmonized" in res.output and (tmp_path / "s.csv").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["segment", "evaluate", str(tmp_path), "--segmenter", str(ckpt)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "outputs.csv" in err and "Traceback" not in err


def test_evaluate_cli_with_segmenter_writes_metrics_and_segmentation(setup, tmp_path, capsys):
    import shutil

    from sonoshift.cli.main import main

    _, ckpt, run = setup
    copy = shutil.copytree(run, tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(copy), "--segmenter", str(ckpt), "-q"])
    assert e.value.code == 0
    seg = pd.read_csv(copy / "segmentation.csv")
    direct = evaluate_segmentation(run, ckpt, tmp_path / "direct.csv", progress=False)
    np.testing.assert_allclose(seg["dice_mean"], direct["dice_mean"])
    assert (copy / "metrics.csv").is_file() and "harmonized" in capsys.readouterr().out
