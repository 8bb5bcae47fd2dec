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


def test_a_moved_run_folder_returns_paths_in_its_new_place(tmp_path):
    """Paths inside the stage's folder are stored relative to it: a copied run resumes with its own paths; other
    strings and paths outside the folder come back unchanged."""
    import shutil

    old, new = tmp_path / "old" / "run", tmp_path / "elsewhere" / "run"
    old.mkdir(parents=True)
    result = {"report": str(old / "report" / "index.html"), "root": str(old), "runs": [str(old / "a"), "note"],
              "outside": str(tmp_path / "data"), "sibling": str(tmp_path / "old" / "run2" / "x"), "n": 3}
    log = StageLog()
    assert run_stage("s", old, {"a": 1}, lambda: result, force=False, log=log) == result
    shutil.copytree(old, new)
    shutil.rmtree(old)
    again = run_stage("s", new, {"a": 1}, lambda: pytest.fail("a finished stage ran again"), force=False, log=log)
    assert log.entries["s"]["status"] == "reused"
    assert again == {"report": (new / "report" / "index.html").as_posix(), "root": new.as_posix(),
                     "runs": [(new / "a").as_posix(), "note"], "outside": str(tmp_path / "data"),
                     "sibling": str(tmp_path / "old" / "run2" / "x"), "n": 3}
    # a folder named relative to the working directory keeps that spelling
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        rel = Path("elsewhere") / "run"
        assert run_stage("s", rel, {"a": 1}, lambda: pytest.fail("ran"), force=False, log=log)["report"] == (
            "elsewhere/run/report/index.html")
    finally:
        os.chdir(cwd)
