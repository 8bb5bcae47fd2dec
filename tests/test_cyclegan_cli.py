"""`sonoshift train cyclegan` end to end on a tiny prepared dataset: run folder, logs, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.config import load_config
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.methods.cyclegan import CycleGANConfig

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=2", "train.device=cpu",
        "train.log_every=1", "train.image_every=2", "train.checkpoint_every=2"]


def test_train_cyclegan_cli_writes_a_complete_run_and_resumes(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "run"
    runner = CliRunner()
    args = ["train", "cyclegan", "--data", str(data), "--out", str(out), "-q", *TINY]
    res = runner.invoke(app, [*args, "train.max_steps=2"])
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.output
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert list((out / "tb").glob("events.out.tfevents.*"))
    res = runner.invoke(app, [*args, "train.max_steps=4", "--resume"])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    tr = load_translator(out)
    assert tr.image_size == (32, 32)
    # the checkpoint remembers the dataset's resize settings for `harmonize`
    from sonoshift.engine.checkpoint import read_model

    assert read_model(out).state["metadata"]["prepare"]["resize"] == {"size": 32, "mode": "pad"}


def test_train_cyclegan_cli_errors_are_one_sentence(tmp_path: Path, tiny_dataset) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "cyclegan", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "-q"])
    assert isinstance(res.exception, SonoshiftError) and "not a prepared dataset" in str(res.exception)
    data = tiny_dataset(tmp_path / "data")
    res = runner.invoke(app, ["train", "cyclegan", "--data", str(data), "--out", str(tmp_path / "r"), "model.nfg=3"])
    assert isinstance(res.exception, SonoshiftError) and "model.nfg" in str(res.exception)


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_named_configs_load(name: str) -> None:
    cfg = load_config(CycleGANConfig, REPO / "configs" / name / "cyclegan.yaml")
    assert cfg.train.lr == 2e-4 and (cfg.train.beta1, cfg.train.beta2) == (0.5, 0.999)
    assert (cfg.loss.cycle, cfg.loss.identity, cfg.loss.pool_size) == (10.0, 5.0, 50)
    if name == "paper":
        assert (cfg.data.size, cfg.train.batch_size, cfg.train.epochs) == (256, 128, 125)
        assert (cfg.model.ngf, cfg.model.n_blocks) == (64, 9)
        assert cfg.train.batch_size % cfg.train.accum_steps == 0
