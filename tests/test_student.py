"""Distillation: teacher targets, the student method through the engine, its translator, export and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_ddgan_method import SIZE, TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.config import load_config
from sonoshift.data.cache import load_cache
from sonoshift.data.datasets import UnpairedDataset
from sonoshift.deploy.export import export_onnx
from sonoshift.deploy.runtime import OnnxTranslator
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.methods.ddgan import DDGANConfig, train_ddgan
from sonoshift.methods.student import DistillFrames, StudentConfig, build_student, distill, teacher_targets
from sonoshift.models.mobile_unet import MobileUNet
from sonoshift.inference.translate import to_signed, to_uint8

TINY_STUDENT = ["model.ch=4", "model.n_blocks=1", "model.ndf=4", "model.d_layers=2", "train.batch_size=2",
                "train.max_steps=2", "train.device=cpu", "train.tensorboard=false", "train.image_every=0",
                "train.log_every=1"]


def test_teacher_targets_are_the_teachers_translation(tiny_run) -> None:  # noqa: F811
    tr = load_translator(tiny_run["cg"])
    frames = np.asarray(load_cache(tiny_run["data"], "train", "handheld"))
    got = teacher_targets(tr, frames, batch_size=4)
    np.testing.assert_array_equal(got, to_uint8(tr(to_signed(frames))))
    ds = DistillFrames(UnpairedDataset(tiny_run["data"], "train", "handheld", "cart"), got)
    item = ds[3]
    k = ds.frames[3]["source_index"]
    torch.testing.assert_close(item["teacher"], torch.from_numpy(got[k]).float()[None] / 127.5 - 1)
    with pytest.raises(SonoshiftError, match="do not match"):
        DistillFrames(ds.frames, got[:2])


def test_stochastic_teacher_targets_are_seeded(tiny_run) -> None:  # noqa: F811
    run = tiny_run["root"] / "student_dd"
    if not run.exists():
        cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "train.max_steps=1"])
        train_ddgan(tiny_run["data"], cfg, run, progress=False)
    tr = load_translator(run)
    frames = np.asarray(load_cache(tiny_run["data"], "train", "handheld"))[:4]
    a, b = teacher_targets(tr, frames, seed=1), teacher_targets(tr, frames, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, teacher_targets(tr, frames, seed=2))
    mean3 = teacher_targets(tr, frames, seed=1, samples=3)
    assert mean3.shape == a.shape and not np.array_equal(mean3, a)


def test_distill_checkpoint_translator_export(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(StudentConfig, None, TINY_STUDENT)
    res = distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "st", progress=False)
    assert res.step == 2
    ckpt = read_model(tmp_path / "st")
    meta = ckpt.state["metadata"]
    assert ckpt.method == "student" and meta["teacher"]["method"] == "cyclegan"
    assert (meta["source_domain"], meta["target_domain"]) == ("handheld", "cart")
    assert meta["prepare"] == read_model(tiny_run["cg"]).state["metadata"]["prepare"]  # the engine's stamp
    st = load_translator(tmp_path / "st")
    assert st.method == "student" and st.image_size == (SIZE, SIZE)
    x = torch.rand(2, 1, SIZE, SIZE) * 2 - 1
    y = st(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    onnx_path = export_onnx(tmp_path / "st", tmp_path / "st.onnx")
    assert (OnnxTranslator(onnx_path)(x) - y).abs().max().item() <= 1e-3
    # exact resume: the teacher targets are recomputed (seeded) and training continues
    cfg4 = load_config(StudentConfig, None, [*TINY_STUDENT, "train.max_steps=3"])
    assert distill(tiny_run["cg"], tiny_run["data"], cfg4, tmp_path / "st", resume=True, progress=False).step == 3


def test_distillation_loss_goes_down(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(StudentConfig, None, [*TINY_STUDENT, "loss.adversarial=0", "train.max_steps=40",
                                            "train.lr=3e-3", "model.ch=8"])
    distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "st", progress=False)
    l1 = [json.loads(line)["distill_l1"] for line in (tmp_path / "st" / "log.jsonl").read_text().splitlines()]
    assert np.mean(l1[-5:]) < 0.8 * np.mean(l1[:5])


def test_mobile_unet_student_shapes_and_batch_independence() -> None:
    net = build_student(load_config(StudentConfig, None, ["model.ch=4"]).model).eval()  # the default arch
    assert isinstance(net, MobileUNet)
    x = torch.rand(3, 1, 24, 40) * 2 - 1
    with torch.no_grad():
        y = net(x)
        torch.testing.assert_close(torch.cat([net(x[i : i + 1]) for i in range(3)]), y)
    assert y.shape == x.shape and y.abs().max() <= 1
    with pytest.raises(SonoshiftError, match="arch"):  # refused by the config's validation, naming the key
        load_config(StudentConfig, None, ["model.arch=vit"])


def test_cli_distill(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    res = CliRunner().invoke(app, ["distill", str(tiny_run["cg"]), *TINY_STUDENT, "model.arch=resnet",
                                   "--data", str(tiny_run["data"]), "-o", str(tmp_path / "st"), "-q"])
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.output
    assert load_translator(tmp_path / "st").net.__class__.__name__ == "ResnetGenerator"


def test_cyclegan_with_the_student_network_is_the_no_teacher_baseline() -> None:
    from sonoshift.methods.cyclegan import CycleGANConfig, build_generator

    cfg = load_config(CycleGANConfig, None, ["model.arch=mobile_unet", "model.ngf=4", "model.n_blocks=2"])
    net = build_generator(cfg.model)
    student = build_student(load_config(StudentConfig, None, ["model.ch=4", "model.n_blocks=2"]).model)
    assert isinstance(net, MobileUNet) and set(net.state_dict()) == set(student.state_dict())
    assert all(net.state_dict()[k].shape == v.shape for k, v in student.state_dict().items())


def test_teacher_targets_are_kept_and_reused_only_for_the_same_teacher_and_settings(
        tiny_run, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    import sonoshift.methods.student as student_mod

    kept = tmp_path / "targets.npy"
    cfg = load_config(StudentConfig, None, [*TINY_STUDENT, f"data.targets_file={kept}"])
    distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "a", progress=False)
    frames = np.asarray(load_cache(tiny_run["data"], "train", "handheld"))
    np.testing.assert_array_equal(np.load(kept), teacher_targets(load_translator(tiny_run["cg"]), frames))

    def refuse(*args, **kwargs):
        raise AssertionError("the kept targets should have been reused")

    monkeypatch.setattr(student_mod, "teacher_targets", refuse)
    ablation = load_config(StudentConfig, None, [*TINY_STUDENT, f"data.targets_file={kept}", "loss.adversarial=0"])
    assert distill(tiny_run["cg"], tiny_run["data"], ablation, tmp_path / "b", progress=False).step == 2
    # another training seed with the teacher's seed fixed (students of several seeds, one set of targets): reused
    fixed = load_config(StudentConfig, None, [*TINY_STUDENT, f"data.targets_file={kept}", "train.seed=5",
                                              "data.teacher_seed=0"])
    assert distill(tiny_run["cg"], tiny_run["data"], fixed, tmp_path / "d", progress=False).step == 2
    other_seed = load_config(StudentConfig, None, [*TINY_STUDENT, f"data.targets_file={kept}", "train.seed=5"])
    with pytest.raises(AssertionError, match="should have been reused"):  # another seed: recomputed, not reused
        distill(tiny_run["cg"], tiny_run["data"], other_seed, tmp_path / "c", progress=False)
