"""The CLI says what it does: help without fake values, -h, named configs from anywhere, helpful errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from sonoshift.cli.main import main
from sonoshift.cli.train import epochs_text
from sonoshift.config import find_config, load_config, named_configs
from sonoshift.engine.loop import TrainResult
from sonoshift.errors import SonoshiftError
from sonoshift.methods.cyclegan import CycleGANConfig


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


@pytest.mark.parametrize("args", [["-h"], ["train", "cyclegan", "-h"], ["harmonize", "-h"], ["segment", "train", "-h"],
                                  ["report", "--help"]])
def test_help_shows_flags_without_a_value_and_h_works(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "Usage" in out
    assert "<bool>" not in out and "-h" in out


def test_named_configs_resolve_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert {"cpu/cyclegan", "cpu/ddgan", "cpu/cascade", "paper/cyclegan"} <= set(named_configs())
    assert load_config(CycleGANConfig, "cpu/cyclegan").model.ngf == 16  # configs/cpu/cyclegan.yaml
    assert find_config("configs/cpu/cyclegan.yaml") == find_config("cpu/cyclegan")
    own = tmp_path / "mine.yaml"
    own.write_text("model: {ngf: 8}\n")
    assert load_config(CycleGANConfig, own).model.ngf == 8
    with pytest.raises(SonoshiftError, match="not a named config .*cpu/cyclegan"):
        load_config(CycleGANConfig, "cpu/cyclegann")


def test_train_without_config_says_it_is_the_paper_size_network(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["train", "cyclegan", "--data", str(tmp_path), "-o", str(tmp_path / "r")], capsys)
    assert "paper-size cyclegan network" in err and "-c cpu/cyclegan" in err
    assert code == 1 and "is not a prepared dataset" in err


@pytest.mark.parametrize("method", ["cascade", "ddgan"])
def test_diffusion_training_without_a_cyclegan_explains_it(method: str, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["train", method, "--data", str(tmp_path), "-o", str(tmp_path / "r"), "-c",
                            f"cpu/{method}"], capsys)
    assert code == 1 and "needs a trained cyclegan" in err and "--cyclegan RUN" in err
    assert "cyclegan=runs/cpu_cyclegan does not exist" in err and err.count("\n") == 1


def test_epochs_are_never_reported_as_zero_after_training() -> None:
    assert epochs_text(TrainResult(step=1, epoch=0, checkpoint=None, steps_per_epoch=4)) == "0.25 of an epoch"
    assert epochs_text(TrainResult(step=8, epoch=2, checkpoint=None, steps_per_epoch=4)) == "2 epochs"
    assert epochs_text(TrainResult(step=4, epoch=1, checkpoint=None, steps_per_epoch=4)) == "1 epoch"


def test_harmonize_crop_error_names_its_own_flag() -> None:
    from sonoshift.data.crop import CropConfig
    from sonoshift.inference.translate import Geometry, harmonize_stack
    from sonoshift.data.resize import ResizeConfig

    class Identity:
        method, image_size, source_domain, target_domain = "identity", (32, 32), "a", "b"

        def __call__(self, x, generator=None):
            return x

    blank = np.zeros((2, 40, 40), np.uint8)
    with pytest.raises(SonoshiftError, match="pass --no-crop") as e:
        harmonize_stack(blank, Identity(), Geometry(CropConfig(), ResizeConfig(size=32)), name="blank.npy")
    assert "crop.method" not in str(e.value)


def test_harmonized_mp4_and_folders_follow_the_umask(tmp_path: Path) -> None:
    from sonoshift.inference.harmonize import write_mp4

    old = os.umask(0o022)
    try:
        write_mp4(tmp_path / "sub" / "a.mp4", np.zeros((2, 16, 16), np.uint8), 10)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sub" / "a.mp4").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o755
