"""pipeline/stages.py: finished stages are reused, changed ones rerun, and keys do not depend on the cwd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sonoshift.pipeline.stages import StageLog, is_stale, path_key, run_stage


def test_reuse_rerun_and_force(tmp_path):
    calls = []
    log = StageLog()

    def work():
        calls.append(1)
        return {"n": len(calls)}

    assert run_stage("s", tmp_path, {"a": 1}, work, force=False, log=log) == {"n": 1}
    assert run_stage("s", tmp_path, {"a": 1}, work, force=False, log=log) == {"n": 1}  # reused, result kept
    assert log.entries["s"]["status"] == "reused" and len(calls) == 1
    assert is_stale("s", tmp_path, {"a": 2}) and not is_stale("s", tmp_path, {"a": 1})
    assert run_stage("s", tmp_path, {"a": 2}, work, force=False, log=log) == {"n": 2}  # other settings: rerun
    assert run_stage("s", tmp_path, {"a": 2}, work, force=True, log=log) == {"n": 3}


def test_crashed_stage_runs_again(tmp_path):
    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        run_stage("s", tmp_path, 1, boom, force=False, log=StageLog())
    assert not (tmp_path / ".stages" / "s.json").exists()
    assert run_stage("s", tmp_path, 1, lambda: "ok", force=False, log=StageLog()) == "ok"


def test_path_key_same_for_relative_and_absolute_paths(tmp_path, monkeypatch):
    root = tmp_path / "runs" / "demo"
    (root / "data").mkdir(parents=True)
    outside = tmp_path / "shared"
    outside.mkdir()
    absolute = path_key(root / "data", root)
    monkeypatch.chdir(tmp_path)
    assert path_key(Path("runs/demo/data"), Path("runs/demo")) == absolute == "data"
    assert path_key(Path("shared"), Path("runs/demo")) == outside.resolve().as_posix()
    monkeypatch.chdir(root)
    assert path_key("data", ".") == "data"
    # A stage keyed on the relative path is reused when the same run is addressed by its absolute path.
    run_stage("t", Path("."), [path_key("data", ".")], lambda: 1, force=False, log=StageLog())
    log = StageLog()
    run_stage("t", root, [path_key(root / "data", root)], lambda: 2, force=False, log=log)
    assert log.entries["t"]["status"] == "reused"
    assert os.path.samefile(Path.cwd(), root)
