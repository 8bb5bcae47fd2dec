"""The shipped student (configs/cpu/student.yaml, with its default anchor) end to end: `sonoshift distill`, then
the deployment paths a clinic uses with it: `harmonize --runtime onnx` (against the PyTorch translator),
int8 quantization (static and dynamic, against fp32) and `harmonize --live` (a fake capture device)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_ddgan_method import SIZE, tiny_run  # noqa: F401  (the fixture is re-exported)
from test_deploy_stream import FakeCapture
from test_harmonize import cine
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.config import find_config, load_config
from sonoshift.data.cache import load_cache
from sonoshift.deploy.export import export_onnx
from sonoshift.deploy.live import harmonize_live
from sonoshift.deploy.runtime import OnnxTranslator
from sonoshift.engine.checkpoint import read_model
from sonoshift.inference.harmonize import harmonize_inputs
from sonoshift.inference.translate import to_signed
from sonoshift.methods import load_translator
from sonoshift.methods.student import StudentConfig
from sonoshift.models.anchored import AnchoredGenerator

CONFIG = find_config("cpu/student")
# the shipped config at test scale: tiny widths, a few steps, the tiny dataset's size; anchor and losses as shipped
TINY = ["model.ch=4", "model.n_blocks=1", "model.ndf=4", "model.d_layers=2", "train.batch_size=2",
        "train.max_steps=2", "train.lr=1e-2", "train.tensorboard=false", "train.image_every=0", "train.log_every=1",
        f"data.size={SIZE}"]


@pytest.fixture(scope="module")
def student(tiny_run) -> Path:  # noqa: F811
    out = tiny_run["root"] / "default_student"
    if not out.exists():
        res = CliRunner().invoke(app, ["distill", str(tiny_run["cg"]), "-c", str(CONFIG), *TINY, "--data",
                                       str(tiny_run["data"]), "-o", str(out), "-q"])
        assert res.exit_code == 0, res.output
    return out


def test_distill_cli_builds_the_shipped_anchor(student: Path) -> None:
    shipped = load_config(StudentConfig, CONFIG, []).model
    meta = read_model(student).state["metadata"]
    assert meta["student_model"]["anchor"] == shipped.anchor != "none"
    assert (meta["anchor"] or {}).get("kind") == shipped.anchor  # the fitted map travels in the checkpoint
    assert isinstance(load_translator(student).net, AnchoredGenerator)


def test_harmonize_runtime_onnx_matches_torch(student: Path, tmp_path: Path) -> None:
    video = tmp_path / "loop.npy"
    np.save(video, cine(t=4, h=40, w=48))
    outs = {}
    for runtime in ("torch", "onnx"):
        harmonize_inputs(student, [video], tmp_path / runtime, frames=True, progress=False, runtime=runtime)
        outs[runtime] = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                                  for p in sorted((tmp_path / runtime / "loop").glob("*.png"))])
    assert len(outs["torch"]) == 4 and outs["torch"].std() > 0
    assert np.abs(outs["onnx"].astype(int) - outs["torch"]).max() <= 1  # uint8 rounding: one grey level at most


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_int8_student_is_close_to_fp32(student: Path, tiny_run, tmp_path: Path, mode: str) -> None:  # noqa: F811
    fp32 = OnnxTranslator(export_onnx(student, tmp_path / "f.onnx"))
    q = OnnxTranslator(export_onnx(student, tmp_path / "q.onnx", int8=mode,
                                   calibration=tiny_run["data"] if mode == "static" else None))
    assert q.metadata["quantization"] == f"int8-{mode}"
    x = to_signed(np.asarray(load_cache(tiny_run["data"], "train", "handheld")))  # frames like the calibration's
    torch_y = load_translator(student)(x)
    assert (fp32(x) - torch_y).abs().max().item() <= 1e-3
    err = (q(x) - fp32(x)).abs()
    assert torch.isfinite(q(x)).all() and 0 < err.max().item() and err.mean().item() < 0.1  # int8 moves the numbers by a fraction of the range


def test_harmonize_live_with_the_student_in_onnx(student: Path, tmp_path: Path) -> None:
    frames = cine(t=8, h=40, w=48)
    stats = harmonize_live(student, FakeCapture(frames), tmp_path / "live", runtime="onnx", queue_size=1)
    info = json.loads((tmp_path / "live" / "live.json").read_text())
    assert info["read"] == 8 == stats.read and info["processed"] + info["dropped"] == 8  # drops counted
    assert info["processed"] >= 1 and (tmp_path / "live" / "live.mp4").is_file()
