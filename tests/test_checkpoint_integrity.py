"""Checkpoints carry checksums: flipped bits stop with one sentence and a non-zero exit instead of garbage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sonoshift.cli.main import main
from sonoshift.config import load_config, to_dict
from sonoshift.data.datasets import UnpairedDataset
from sonoshift.engine.checkpoint import MODEL_FILE, TRAIN_FILE, file_digest, read_full, read_model
from sonoshift.engine.loop import train
from sonoshift.engine.stamp import dataset_stamp
from sonoshift.errors import SonoshiftError
from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig

TINY = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=2", "train.max_steps=1",
        "train.device=cpu", "train.tensorboard=false", "train.image_every=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ck")
    data = root / "data"
    (data / "cache" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in ("handheld", "cart"):
        np.save(data / f"cache/train/{d}.npy", rng.integers(0, 256, (4, 32, 32), dtype=np.uint8))
    (data / "dataset.json").write_text("{}")
    cfg = load_config(CycleGANConfig, None, TINY)
    train(CycleGAN(cfg, torch.device("cpu"), (32, 32)), UnpairedDataset(data, "train", "handheld", "cart"),
          cfg.train, root / "run", full_config=to_dict(cfg), progress=False, stamp=dataset_stamp(data))
    return root / "run"


def flip_last_byte(path: Path) -> None:
    """Flip one bit of the last byte (tensor data, never the header): same size, different content."""
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def copy_run(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst, dst / "checkpoints" / "step_00000001"


def test_checksums_are_recorded_in_the_state(run: Path) -> None:
    ck = run / "checkpoints" / "step_00000001"
    sums = json.loads((ck / "state.json").read_text())["checksums"]
    assert sums == {MODEL_FILE: file_digest(ck / MODEL_FILE), TRAIN_FILE: file_digest(ck / TRAIN_FILE)}
    read_model(run)  # an intact checkpoint loads


def test_flipped_bit_in_the_model_file_is_refused(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst, ck = copy_run(run, tmp_path)
    size = (ck / MODEL_FILE).stat().st_size
    flip_last_byte(ck / MODEL_FILE)
    assert (ck / MODEL_FILE).stat().st_size == size
    with pytest.raises(SonoshiftError, match="is damaged"):
        read_model(dst)
    img = tmp_path / "x.npy"
    np.save(img, np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(SystemExit) as e:
        main(["harmonize", "--model", str(dst), str(img), "--out", str(tmp_path / "h"), "--no-crop", "-q"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "is damaged" in err and err.count("\n") == 1
    assert not (tmp_path / "h").exists()


def test_a_lone_model_file_checks_its_own_tensors(run: Path, tmp_path: Path) -> None:
    lone = tmp_path / "model.safetensors"
    shutil.copy(run / "checkpoints" / "step_00000001" / MODEL_FILE, lone)
    read_model(lone)
    flip_last_byte(lone)
    with pytest.raises(SonoshiftError, match="is damaged"):
        read_model(lone)


def test_flipped_bit_in_the_training_state_stops_resume(run: Path, tmp_path: Path) -> None:
    _, ck = copy_run(run, tmp_path)
    flip_last_byte(ck / TRAIN_FILE)
    with pytest.raises(SonoshiftError, match=f"{TRAIN_FILE} is damaged"):
        read_full(ck)


def test_segmenter_checkpoint_checksum_and_its_name(tmp_path: Path, run: Path) -> None:
    from sonoshift.downstream.segmenter import (ModelConfig, Segmenter, build_unet, load_segmenter,
                                                save_segmenter)

    seg = Segmenter(model=build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2), classes=("bg", "head"),
                    image_size=32, config={"model": {"channels": [4, 8], "strides": [2]}}, info={})
    path = save_segmenter(seg, tmp_path / "seg")
    load_segmenter(path)
    weights = next(path.glob("*.safetensors"))
    with pytest.raises(SonoshiftError, match=r"segmenter checkpoint \(from `sonoshift segment`\), not a model this "
                                             r"command takes\.$"):
        read_model(weights)  # given to a command that wants another model by mistake
    # the sentence names what the command wanted and no option, since not every command has --segmenter / --model
    from sonoshift.judges.plane.checkpoint import load_classifier
    from sonoshift.methods.ddgan import load_cyclegan

    with pytest.raises(SonoshiftError, match=r"segmenter checkpoint .*, not a plane classifier \(from `sonoshift "
                                             r"classify train`\)\.$") as e:
        load_classifier(weights)  # `classify predict SEG ...`
    assert "--" not in str(e.value)
    with pytest.raises(SonoshiftError, match=r"segmenter checkpoint .*, not a CycleGAN \(from `sonoshift train "
                                             r"cyclegan`\)\.$"):
        load_cyclegan(weights, torch.device("cpu"))  # `train ddgan ... cyclegan=SEG`
    flip_last_byte(weights)
    with pytest.raises(SonoshiftError, match="are damaged"):
        load_segmenter(path)
