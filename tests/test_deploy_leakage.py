"""An exported model and a distilled student keep the training-split records that leakage checks read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest
from test_leakage import trained  # noqa: F401  (the fixture is re-exported)
from test_student import TINY_STUDENT

from sonoshift.config import load_config
from sonoshift.deploy.export import export_onnx, read_metadata
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.inference.harmonize import harmonize_dataset
from sonoshift.leakage import training_records
from sonoshift.methods.student import StudentConfig, distill


def _train_hashes(data: Path) -> list[str]:
    """The hashed training patients, computed here from splits.json (sha256 of the id, first 16 hex digits)."""
    splits = json.loads((data / "splits.json").read_text())
    ids = {p for d, parts in splits.items() if isinstance(parts, dict) for p in parts.get("train", [])}
    return sorted(hashlib.sha256(p.encode()).hexdigest()[:16] for p in ids)


def _meta(path: Path) -> dict:
    return read_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def test_onnx_metadata_carries_the_training_split_and_harmonize_checks_it(trained, tmp_path: Path) -> None:  # noqa: F811
    data, run = trained
    model = export_onnx(run, tmp_path / "cg.onnx")
    (rec,) = _meta(model)["training_split"]
    assert rec["split"] == "train" and rec["patients"] == _train_hashes(data)
    assert rec["splits_sha256"] == read_model(run).state["training_split"]["splits_sha256"]
    with pytest.raises(SonoshiftError, match=r"trained on 4 of the 4 patient\(s\) of the train split"):
        harmonize_dataset(model, data, tmp_path / "leak", split="train", runtime="onnx", progress=False)
    assert not (tmp_path / "leak").exists()
    ok = harmonize_dataset(model, data, tmp_path / "ok", split="test", runtime="onnx", progress=False)
    assert "leakage" not in json.loads((ok / "run.json").read_text())


def test_a_student_records_its_split_and_its_teachers(trained, tmp_path: Path) -> None:  # noqa: F811
    data, run = trained
    cfg = load_config(StudentConfig, None, TINY_STUDENT)
    distill(run, data, cfg, tmp_path / "st", progress=False)
    state = read_model(tmp_path / "st").state
    assert state["training_split"]["patients"] == _train_hashes(data)
    assert len(training_records(state)) == 2  # its own and its teacher's (config "teacher")
    records = _meta(export_onnx(tmp_path / "st", tmp_path / "st.onnx"))["training_split"]
    assert [r["patients"] for r in records] == [_train_hashes(data)] * 2
    with pytest.raises(SonoshiftError, match="train split"):
        harmonize_dataset(tmp_path / "st.onnx", data, tmp_path / "leak", split="train", runtime="onnx",
                          progress=False)
