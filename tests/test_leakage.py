"""Leakage is checked at every read of a split, and a model is not scored on patients it was trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prep_synth import make_video
from sonoshift.config import load_config, to_dict
from sonoshift.data.datasets import FrameDataset, UnpairedDataset
from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.data.splits import patient_hash, split_hash, verify_split
from sonoshift.engine.checkpoint import read_model
from sonoshift.engine.loop import train
from sonoshift.engine.stamp import dataset_stamp
from sonoshift.errors import SonoshiftError
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.inference.harmonize import harmonize_dataset
from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig
from sonoshift.report import ReportConfig, make_report

TINY = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=2", "train.max_steps=1",
        "train.device=cpu", "train.tensorboard=false", "train.image_every=0", "data.source_domain=handheld",
        "data.target_domain=cart"]
PREP = ["resize.size=32", "split.fractions=[0.5,0.25,0.25]"]


def prepared(root: Path, seed: int = 0) -> Path:
    inputs = []
    for d in ("handheld", "cart"):
        folder = root / "in" / d
        if not folder.exists():
            folder.mkdir(parents=True)
            for p in range(4):
                np.save(folder / f"{d}{p}.npy", make_video(3, seed=p))
        inputs.append(folder)
    cfg = load_config(PrepareConfig, None, [*PREP, f"split.seed={seed}"])
    return prepare(inputs, root / f"data{seed}", cfg, progress=False).out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("leak")
    data = prepared(root)
    cfg = load_config(CycleGANConfig, None, TINY)
    ds = UnpairedDataset(data, "train", "handheld", "cart")
    train(CycleGAN(cfg, torch.device("cpu"), (32, 32)), ds, cfg.train, root / "run", full_config=to_dict(cfg),
          progress=False, stamp=dataset_stamp(data))
    return data, root / "run"


def test_checkpoint_records_the_split_it_was_trained_on(trained: tuple[Path, Path]) -> None:
    data, run = trained
    splits = json.loads((data / "splits.json").read_text())
    rec = read_model(run).state["training_split"]
    assert rec["splits_sha256"] == split_hash(splits) and rec["split"] == "train"
    train_ids = [p for d in ("handheld", "cart") for p in splits[d]["train"]]
    assert sorted(rec["patients"]) == sorted(patient_hash(p) for p in train_ids)
    assert not any(p in json.dumps(rec) for p in train_ids)  # ids themselves are not stored


def test_evaluating_on_training_patients_is_refused_or_marked_red(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    ok = harmonize_dataset(run, data, tmp_path / "test_run", split="test", progress=False)
    assert "leakage" not in json.loads((ok / "run.json").read_text())
    with pytest.raises(SonoshiftError, match=r"trained on 4 of the 4 patient\(s\) of the train split.*--allow-leakage"):
        harmonize_dataset(run, data, tmp_path / "train_run", split="train", progress=False)
    assert not (tmp_path / "train_run").exists()
    leak = harmonize_dataset(run, data, tmp_path / "train_run", split="train", progress=False, allow_leakage=True)
    assert json.loads((leak / "run.json").read_text())["leakage"]["shared_patients"] == 4
    cfg = EvaluateConfig(lpips="none", distribution=False, modes=("source",))
    evaluate_run(leak, cfg, progress=False)
    evaluate_run(ok, cfg, progress=False)
    assert json.loads((leak / "metrics.json").read_text())["leakage"]["shared_patients"] == 4
    report = make_report([ok, leak], tmp_path / "report", ReportConfig(grid_frames=0, violins=False))
    page = (report / "index.html").read_text()
    assert page.count('class="leakage"') == 1 and "color:#c00" in page
    assert "LEAKAGE" in (report / "table.md").read_text()


def test_a_model_trained_on_another_split_seed_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    root = data.parent
    other = None
    for seed in range(1, 20):  # a split seed whose test split holds one of the model's training patients
        cand = prepared(root, seed)
        s0, s1 = (json.loads((d / "splits.json").read_text()) for d in (data, cand))
        if set(s0["handheld"]["train"]) & set(s1["handheld"]["test"]):
            other = cand
            break
    assert other is not None
    with pytest.raises(SonoshiftError, match="test split of"):
        harmonize_dataset(run, other, tmp_path / "x", split="test", progress=False)


def edited(data: Path, tmp_path: Path) -> Path:
    """A copy of the dataset whose splits.json puts a training patient in the test split as well."""
    copy = tmp_path / "edited"
    shutil.copytree(data, copy)
    splits = json.loads((copy / "splits.json").read_text())
    splits["handheld"]["test"].append(splits["handheld"]["train"][0])
    (copy / "splits.json").write_text(json.dumps(splits))
    return copy


def test_an_edited_splits_json_is_caught_at_every_read(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    bad = edited(data, tmp_path)
    for read in (lambda: verify_split(bad, "test"),
                 lambda: UnpairedDataset(bad, "train", "handheld", "cart"),
                 lambda: FrameDataset(bad, "test"),
                 lambda: harmonize_dataset(run, bad, tmp_path / "h", split="test", progress=False)):
        with pytest.raises(SonoshiftError, match="leaks between"):
            read()
    # a run made before the edit: evaluate and a new prepare into the same folder check again
    good = harmonize_dataset(run, data, tmp_path / "run", split="test", progress=False)
    meta = json.loads((good / "run.json").read_text())
    meta["dataset"] = str(bad)
    (good / "run.json").write_text(json.dumps(meta))
    with pytest.raises(SonoshiftError, match="leaks between"):
        evaluate_run(good, EvaluateConfig(lpips="none"), progress=False)
    meta["dataset"] = str(data)
    (good / "run.json").write_text(json.dumps(meta))
    evaluate_run(good, EvaluateConfig(lpips="none", distribution=False, modes=("source",)), progress=False)
    meta["dataset"] = str(bad)  # edited after evaluate: the report reads the split again
    (good / "run.json").write_text(json.dumps(meta))
    with pytest.raises(SonoshiftError, match="leaks between"):
        make_report([good], tmp_path / "report", ReportConfig(grid_frames=0, violins=False))
    with pytest.raises(SonoshiftError, match="leaks between"):
        prepare([data.parent / "in" / "handheld", data.parent / "in" / "cart"], bad,
                load_config(PrepareConfig, None, PREP), progress=False)


def test_a_manifest_that_disagrees_with_splits_json_is_caught(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(data, copy)
    splits = json.loads((copy / "splits.json").read_text())
    moved = splits["cart"]["test"][0]
    splits["cart"]["test"].remove(moved)
    splits["cart"]["train"].append(moved)
    (copy / "splits.json").write_text(json.dumps(splits))  # no leakage in splits.json itself, but the manifest...
    with pytest.raises(SonoshiftError, match=rf"manifest_test.csv lists patient '{moved}'.*puts in train"):
        FrameDataset(copy, "test")


def test_a_segmenter_trained_on_the_runs_split_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from sonoshift.data.splits import split_record
    from sonoshift.evaluate import verify_run_split

    data, run = trained
    test_run = harmonize_dataset(run, data, tmp_path / "test_run", split="test", progress=False)
    splits = json.loads((data / "splits.json").read_text())
    seg = tmp_path / "seg"
    seg.mkdir()
    for trained_on, refused in (("train", False), ("test", True)):
        info = {"training_split": split_record(splits, trained_on)}
        (seg / "segmenter.json").write_text(json.dumps({"info": info}))
        if refused:
            with pytest.raises(SonoshiftError, match="segmenter .* was trained on"):
                verify_run_split(test_run, seg)
        else:
            assert verify_run_split(test_run, seg) is None
