"""One override style on every command: positional key=value; `segment`'s old `--set k=v` still works."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.errors import SonoshiftError


@pytest.mark.parametrize("command", [["segment", "train", "DATA"], ["segment", "train-hc18"]])
@pytest.mark.parametrize("style", ["positional", "set"])
def test_segment_overrides_are_positional_and_set_is_a_deprecated_alias(command, style, tmp_path: Path) -> None:
    args = [tmp_path / "nodata" if a == "DATA" else a for a in command]
    override = ["train.nosuch=3"] if style == "positional" else ["--set", "train.nosuch=3"]
    res = CliRunner().invoke(app, [*map(str, args), *override, "--out", str(tmp_path / "o")])
    # the override reached the config loader, which names the bad key
    assert isinstance(res.exception, SonoshiftError) and "train.nosuch" in str(res.exception)
    assert ("deprecated" in res.output) == (style == "set")


def test_simulate_takes_positional_overrides_after_its_options(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["simulate", "--out", str(tmp_path / "bad"), "nosuch=1"])
    assert isinstance(bad.exception, SonoshiftError) and "nosuch" in str(bad.exception)
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path / "s"), "--patients", "1", "--size", "32",
                              "--frames-per-sweep", "1", "--sweeps", "tr-mid", "--workers", "1", "--quiet",
                              "fps=7", "patients=2"])
    assert res.exit_code == 0, res.output
    import json

    info = json.loads((tmp_path / "s" / "simulation.json").read_text())
    assert "simulated 2 patients" in res.output
    assert 7 in [v for k, v in _walk(info) if k == "fps"]


def _walk(tree):
    """(key, value) of every entry of a nested JSON tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _walk(v)


def test_study_budgets_are_one_mapping_keyed_by_method() -> None:
    from sonoshift.config import load_config
    from sonoshift.pipeline.demo import DemoConfig

    cfg = load_config(DemoConfig, None, ["study.steps.cyclegan=300", "study.configs.ddgan=configs/paper/x.yaml"])
    assert cfg.study.steps == {"ddgan": 300, "cascade": 300, "cyclegan": 300}  # the demo's own budgets stay
    assert cfg.study.configs == {"ddgan": "configs/paper/x.yaml"}
    with pytest.raises(SonoshiftError, match="study.steps.cyclegan"):
        load_config(DemoConfig, None, ["study.steps.cyclegan=many"])
