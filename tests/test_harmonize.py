"""`sonoshift harmonize`: translators from checkpoints, cine-loops in/out, paste-back, and the dataset mode."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.config import load_config, to_dict
from sonoshift.data.datasets import UnpairedDataset
from sonoshift.data.readers import read_stack
from sonoshift.data.resize import ResizeConfig
from sonoshift.engine.loop import train
from sonoshift.engine.stamp import dataset_stamp
from sonoshift.errors import SonoshiftError
from sonoshift.inference.harmonize import harmonize_dataset, harmonize_inputs
from sonoshift.io.video import write_mp4
from sonoshift.methods import load_translator
from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig
from sonoshift.runs import open_run
from sonoshift.inference.translate import Geometry, harmonize_stack, to_signed, to_uint8

TINY = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=2", "train.max_steps=2",
        "train.device=cpu", "train.tensorboard=false", "train.image_every=0"]


def cine(t: int = 6, h: int = 72, w: int = 96, seed: int = 0) -> np.ndarray:
    """A fake cine-loop: a smooth moving pattern in a fan-shaped region, a static bright overlay box."""
    yy, xx = np.mgrid[:h, :w]
    fan = ((yy - 4) ** 2 + (xx - w / 2) ** 2 < (h - 10) ** 2) & (np.abs(xx - w / 2) < (yy + 6) * 0.9)
    frames = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        pattern = 125 + 80 * np.sin(xx / 5.0 + 0.9 * i + seed) * np.cos(yy / 7.0 - 0.5 * i)
        frames[i][fan] = pattern[fan].astype(np.uint8)
    frames[:, 2:8, 2:20] = 250  # "burned-in text"
    return frames


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dataset) -> Path:
    root = tmp_path_factory.mktemp("cg")
    data = tiny_dataset(root / "data", n_src=4, n_tgt=4)
    cfg = load_config(CycleGANConfig, None, TINY)
    method = CycleGAN(cfg, torch.device("cpu"), (32, 32))
    train(method, UnpairedDataset(data, "train", "handheld", "cart"), cfg.train, root / "run",
          full_config=to_dict(cfg), progress=False, stamp=dataset_stamp(data))
    return root / "run"


class Identity:
    """A translator that returns its input (to check the crop/resize geometry on its own)."""

    method, image_size, source_domain, target_domain = "identity", (64, 64), "a", "b"

    def __call__(self, x, generator=None):
        return x


def test_load_translator_dispatches_on_method_and_matches_generator(model_dir: Path) -> None:
    tr = load_translator(model_dir)
    assert tr.method == "cyclegan" and tr.image_size == (32, 32)
    assert (tr.source_domain, tr.target_domain) == ("handheld", "cart")
    rev = load_translator(model_dir / "checkpoints" / "step_00000002" / "model.safetensors", reverse=True)
    assert (rev.source_domain, rev.target_domain) == ("cart", "handheld")
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    y, y_rev = tr(x), rev(x)
    assert y.shape == x.shape and y.abs().max() <= 1 and not torch.allclose(y, y_rev)
    # Batched inference equals frame-by-frame inference (instance norm is per image).
    torch.testing.assert_close(torch.cat([tr(x[i : i + 1]) for i in range(3)]), y, rtol=1e-5, atol=1e-6)
    with pytest.raises(SonoshiftError, match="does not exist"):
        load_translator(model_dir / "nope")


def test_identity_translator_reproduces_the_cropped_field_of_view() -> None:
    frames = cine(h=64, w=64)
    res = harmonize_stack(frames, Identity(), Geometry(resize=ResizeConfig(size=64)))
    y0, y1, x0, x1 = res.crop.bbox
    expected = frames[:, y0:y1, x0:x1] * res.crop.mask
    assert res.frames.shape == expected.shape
    # Crop -> pad to 64 -> translate -> back: only resampling error (the crop is smaller than 64).
    assert np.abs(res.frames.astype(int) - expected)[:, res.crop.mask].mean() < 4
    assert not res.crop.full_mask[2:8, 2:20].any()  # the overlay is outside the field of view
    pasted = harmonize_stack(frames, Identity(), Geometry(resize=ResizeConfig(size=64)), paste_back=True)
    assert pasted.frames.shape == frames.shape
    outside = ~res.crop.full_mask
    assert np.array_equal(pasted.frames[:, outside], frames[:, outside])


def test_harmonize_cine_loop_to_mp4_and_frames(model_dir: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    frames = cine()
    write_mp4(clip, frames, fps=12.5)
    back = read_stack(clip)
    assert back.frames.shape == frames.shape and back.fps == pytest.approx(12.5)
    assert np.abs(back.frames.astype(int) - frames).mean() < 4  # near-lossless encode
    out = tmp_path / "out"
    written = harmonize_inputs(model_dir, [clip], out, frames=True, paste_back=True, batch_size=4, progress=False)
    assert written == [out / "clip.mp4", out / "clip"]
    video = read_stack(out / "clip.mp4")
    assert video.frames.shape == frames.shape and video.fps == pytest.approx(12.5)
    pngs = sorted((out / "clip").glob("*.png"))
    assert len(pngs) == 6
    first = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    assert first.shape == frames.shape[1:]
    assert np.array_equal(first[2:8, 2:20], back.frames[0, 2:8, 2:20])  # pasted back: overlay untouched
    assert not list(out.glob(".*tmp*"))  # no temporary leftovers


def test_cli_single_image_and_bad_input(model_dir: Path, tmp_path: Path) -> None:
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), cine(t=1)[0])
    runner = CliRunner()
    res = runner.invoke(app, ["harmonize", "--model", str(model_dir), str(img), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0, res.output
    out = cv2.imread(str(tmp_path / "o" / "frame.png"), cv2.IMREAD_GRAYSCALE)
    assert out is not None and out.ndim == 2
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(SonoshiftError, match="bad.png"):
        harmonize_inputs(model_dir, [bad], tmp_path / "o2", progress=False)


def make_prepared(root: Path, size: int = 32) -> Path:
    """A hand-written prepared dataset (docs/formats.md §2): 3 handheld + 3 cart test frames, paired, with GT."""
    rng = np.random.default_rng(5)
    rows, pairs = [], []
    for d in ("handheld", "cart"):
        arr = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
        mask = np.zeros((3, size, size), np.uint8)
        mask[:, 4:28, 2:30] = 255
        (root / "cache" / "test").mkdir(parents=True, exist_ok=True)
        np.save(root / f"cache/test/{d}.npy", arr)
        np.save(root / f"cache/test/{d}.mask.npy", mask)
        for i in range(3):
            rel = f"frames/{d}/p1/v1_{d}/{i:05d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), arr[i])
            mrel = f"masks/{d}/p1/v1_{d}/{i:05d}.png"
            (root / mrel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / mrel), mask[i])
            gt = f"aligned/gt_cart/{d}/p1/v1_{d}/{i:05d}.png" if d == "handheld" else ""
            rows.append({"patient_id": "p1", "domain": d, "video_id": f"v1_{d}", "frame_index": i, "path": rel,
                         "mask_path": mrel, "plane": "", "ga_weeks": "", "label_path": "", "gt_cart_path": gt})
    for i in range(3):
        pairs.append({"source_domain": "handheld", "target_domain": "cart",
                      "source_path": f"frames/handheld/p1/v1_handheld/{i:05d}.png",
                      "target_path": f"frames/cart/p1/v1_cart/{i:05d}.png"})
    for name, data in (("manifest_test.csv", rows), ("pairs_test.csv", pairs)):
        with open(root / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(data[0]))
            w.writeheader()
            w.writerows(data)
    (root / "dataset.json").write_text(json.dumps({"domains": ["handheld", "cart"]}))
    return root


def test_dataset_mode_writes_a_translation_run(model_dir: Path, tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep")
    run = harmonize_dataset(model_dir, data, tmp_path / "run", split="test", batch_size=2, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "cyclegan" and info["split"] == "test"
    assert (info["source_domain"], info["target_domain"]) == ("handheld", "cart")
    with open(run / "outputs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["frame_index"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["target_path"] == "frames/cart/p1/v1_cart/00001.png"
    assert rows[1]["gt_path"] == "aligned/gt_cart/handheld/p1/v1_handheld/00001.png"
    assert rows[1]["mask_path"] == "masks/handheld/p1/v1_handheld/00001.png"
    # Independent path: the public translator on the cached frames gives the same PNGs (inside the mask).
    tr = load_translator(model_dir)
    src = np.load(data / "cache/test/handheld.npy")
    expect = to_uint8(tr(to_signed(src)))
    mask = np.load(data / "cache/test/handheld.mask.npy") > 0
    for r, e, m in zip(rows, expect, mask):
        got = cv2.imread(str(run / r["output_path"]), cv2.IMREAD_GRAYSCALE)
        assert np.abs(got.astype(int) - e.astype(int))[m].max() <= 1 and (got[~m] == 0).all()
    with pytest.raises(SonoshiftError, match="no test frames of the model's source domain"):
        load = make_prepared(tmp_path / "prep2")
        rows_txt = (load / "manifest_test.csv").read_text().replace("handheld", "other")
        (load / "manifest_test.csv").write_text(rows_txt)
        harmonize_dataset(model_dir, load, tmp_path / "run2", progress=False)


def test_a_moved_run_still_finds_its_dataset(model_dir: Path, tmp_path: Path) -> None:
    """run.json names the dataset relative to the run (a run moved with its dataset, e.g. a copied demo folder)
    and where it was (a run moved alone); evaluate reads the frames through RunFolder.dataset_root."""
    data = make_prepared(tmp_path / "a" / "data")
    run = harmonize_dataset(model_dir, data, tmp_path / "a" / "harmonized" / "cg", split="test", progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["dataset"] == "../../data" and info["dataset_absolute"] == str(data.resolve())
    cell = "frames/cart/p1/v1_cart/00001.png"
    shutil.move(tmp_path / "a", tmp_path / "b")  # run and dataset together: the relative path
    moved = open_run(tmp_path / "b" / "harmonized" / "cg")
    assert moved.dataset_root.resolve() == (tmp_path / "b" / "data").resolve()
    assert moved.resolve(cell).is_file()
    shutil.copytree(tmp_path / "b" / "data", tmp_path / "a" / "data")  # the dataset back where it was written
    shutil.move(tmp_path / "b" / "harmonized", tmp_path / "elsewhere")  # ... and the run alone elsewhere
    alone = open_run(tmp_path / "elsewhere" / "cg")
    assert alone.dataset_root == data.resolve() and alone.resolve(cell).is_file()
