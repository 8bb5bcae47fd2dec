"""The engine stamps every checkpoint with the dataset it was trained on, so `harmonize` on raw files applies the
training crop and size for every method (DDGAN and cascade included); checkpoints written before the stamp
still load and use their dataset.json, or are refused with one sentence naming their version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_ddgan_method import SIZE, TINY_CG, TINY_DDGAN

from sonoshift.config import load_config, to_dict
from sonoshift.data.crop import CropConfig
from sonoshift.data.resize import ResizeConfig
from sonoshift.engine.checkpoint import read_model
from sonoshift.engine.loop import train
from sonoshift.errors import SonoshiftError
from sonoshift.inference.harmonize import harmonize_inputs
from sonoshift.inference.translate import Geometry, harmonize_stack
from sonoshift.methods import load_translator
from sonoshift.methods.cascade import CascadeConfig, train_cascade
from sonoshift.methods.cyclegan import CycleGANConfig, train_cyclegan
from sonoshift.methods.ddgan import DDGANConfig, TargetFrames, build, train_ddgan

# Not the defaults (auto crop, 256 px pad): a model that forgot them would crop and resize differently.
PREPARE = {"crop": {"method": "none"}, "resize": {"size": 16, "mode": "stretch"}}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_dataset) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stamp")
    data = tiny_dataset(root / "data", n_src=6, size=SIZE, related=True)
    (data / "dataset.json").write_text(json.dumps({"domains": ["cart", "handheld"], "config": PREPARE}))
    train_cyclegan(data, load_config(CycleGANConfig, None, TINY_CG), root / "cg", progress=False)
    extra = [*TINY_DDGAN, f"cyclegan={root / 'cg'}"]
    train_ddgan(data, load_config(DDGANConfig, None, extra), root / "ddgan", progress=False)
    train_cascade(data, load_config(CascadeConfig, None, extra), root / "cascade", progress=False)
    return {"data": data, "cg": root / "cg", "ddgan": root / "ddgan", "cascade": root / "cascade", "root": root}


@pytest.mark.parametrize("method", ["cg", "ddgan", "cascade"])
def test_every_method_records_the_training_crop_and_size(models: dict[str, Path], method: str) -> None:
    meta = read_model(models[method]).state["metadata"]
    assert meta["prepare"] == PREPARE and meta["domains"] == ["cart", "handheld"]
    assert meta["dataset"] == str(models["data"].resolve()) and len(meta["data_hash"]) == 64


@pytest.mark.parametrize("method", ["ddgan", "cascade"])
def test_harmonize_raw_files_with_diffusion_models_uses_the_training_geometry(
    models: dict[str, Path], method: str, tmp_path: Path
) -> None:
    frame = np.random.default_rng(1).integers(0, 256, (24, 40), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "f.png")
    harmonize_inputs(models[method], [tmp_path / "f.png"], tmp_path / "out", progress=False)
    got = np.asarray(Image.open(tmp_path / "out" / "f.png"))
    # the whole 40x24 frame (no crop) stretched to 16x16 and back, with a fresh translator (same default seed)
    want = harmonize_stack(frame[None], load_translator(models[method]),
                           Geometry(CropConfig(method="none"), ResizeConfig(16, "stretch"))).frames[0]
    assert got.shape == (24, 40) and np.array_equal(got, want)


def test_checkpoints_from_before_the_stamp_load_and_use_their_dataset_or_are_refused(
    models: dict[str, Path], tmp_path: Path
) -> None:
    # an old-style DDGAN checkpoint: the loop without the engine's stamp; only the method's own metadata
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={models['cg']}", "train.max_steps=1"])
    ds = TargetFrames(models["data"], cfg.data)
    method = build(cfg, ds, torch.device("cpu"))
    train(method, ds, cfg.train, tmp_path / "old", full_config=to_dict(cfg), progress=False)
    state = read_model(tmp_path / "old").state
    assert "prepare" not in state["metadata"] and "stamp" not in state["metadata"]
    assert load_translator(tmp_path / "old").image_size == (16, 16)  # it still loads

    frame = np.random.default_rng(2).integers(0, 256, (24, 40), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "f.png")
    with pytest.raises(SonoshiftError, match=f"written by sonoshift {state['sonoshift_version']}") as e:
        harmonize_inputs(tmp_path / "old", [tmp_path / "f.png"], tmp_path / "out", progress=False)
    assert str(e.value).count(". ") == 0 and not (tmp_path / "out").exists()
    # --no-crop needs no crop settings: whole frames at the model size
    harmonize_inputs(tmp_path / "old", [tmp_path / "f.png"], tmp_path / "out", progress=False, crop=False)
    assert np.asarray(Image.open(tmp_path / "out" / "f.png")).shape == (24, 40)


def test_a_pre_stamp_checkpoint_that_names_its_dataset_takes_the_geometry_from_it(models: dict[str, Path]) -> None:
    from sonoshift.engine.stamp import prepare_of

    assert prepare_of({"dataset": str(models["data"])}) == PREPARE  # the dataset.json it names
    assert prepare_of({"dataset": str(models["root"] / "gone")}) is None
    assert prepare_of({"prepare": {}, "dataset": str(models["data"])}) == {}  # a stamp wins, even an empty one
