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
