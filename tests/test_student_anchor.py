"""The histogram-anchored student (models/anchored.py): it starts as histogram matching, trains, exports, and the
same network trains as a CycleGAN generator (the no-teacher baseline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_ddgan_method import SIZE, tiny_run  # noqa: F401  (the fixture is re-exported)
from test_student import TINY_STUDENT

from sonoshift.baselines.histogram_match import fit_histogram_match
from sonoshift.config import load_config
from sonoshift.data.cache import load_cache
from sonoshift.deploy.export import export_onnx
from sonoshift.deploy.runtime import OnnxTranslator
from sonoshift.errors import SonoshiftError
from sonoshift.inference.translate import to_signed
from sonoshift.methods import load_translator
from sonoshift.methods.cyclegan import CycleGANConfig, train_cyclegan
from sonoshift.methods.student import StudentConfig, build_student, distill
from sonoshift.models.anchored import AnchoredGenerator

ANCHORED = [*TINY_STUDENT, "model.anchor=histogram_match"]
TINY_CG_ANCHORED = ["model.arch=mobile_unet", "model.anchor=histogram_match", "model.ngf=4", "model.n_blocks=1",
                    "model.ndf=4", "model.d_layers=2", "train.batch_size=2", "train.max_steps=2", "train.device=cpu",
                    "train.tensorboard=false", "train.image_every=0", "train.log_every=1", "loss.pool_size=2"]


def frames(tiny_run, domain: str = "handheld") -> torch.Tensor:  # noqa: F811
    return to_signed(np.asarray(load_cache(tiny_run["data"], "train", domain)))


def test_untrained_anchored_student_is_histogram_matching(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    # 0 steps: the zero-initialized head leaves exactly the anchor, which must be the numpy histogram map fitted
    # independently on the dataset's target training frames (baselines.histogram_match, scikit-image's method)
    cfg = load_config(StudentConfig, None, [*ANCHORED, "train.max_steps=0"])
    distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "st0", progress=False)
    st = load_translator(tmp_path / "st0")
    assert isinstance(st.net, AnchoredGenerator)
    hm = fit_histogram_match(tiny_run["data"], "handheld", "cart")
    x = frames(tiny_run)
    torch.testing.assert_close(st(x), hm(x), atol=2e-3, rtol=0)  # float32 tensors vs numpy float64: < 1/4 level


def test_anchored_student_trains_and_exports(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(StudentConfig, None, [*ANCHORED, "train.lr=1e-2"])
    distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "st", progress=False)
    st = load_translator(tmp_path / "st")
    hm = fit_histogram_match(tiny_run["data"], "handheld", "cart")
    x = frames(tiny_run)
    y = st(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert (y - hm(x)).abs().max() > 1e-3  # two steps moved it off its anchor
    path = export_onnx(tmp_path / "st", tmp_path / "st.onnx")
    assert (OnnxTranslator(path)(x) - y).abs().max().item() <= 1e-3


def test_anchor_needs_the_mobile_unet_and_a_fitted_map() -> None:
    with pytest.raises(SonoshiftError, match="mobile U-Net"):
        build_student(load_config(StudentConfig, None, ["model.anchor=histogram_match", "model.arch=resnet"]).model)
    with pytest.raises(SonoshiftError, match="fitted histogram map"):
        build_student(load_config(StudentConfig, None, ["model.anchor=histogram_match"]).model)


def test_anchored_cyclegan_is_the_student_network_without_a_teacher(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(CycleGANConfig, None, [*TINY_CG_ANCHORED, "train.max_steps=0"])
    train_cyclegan(tiny_run["data"], cfg, tmp_path / "cg0", progress=False)
    ab, ba = load_translator(tmp_path / "cg0"), load_translator(tmp_path / "cg0", reverse=True)
    # untrained: each generator is histogram matching to the other domain, fitted independently here
    for tr, src, tgt in ((ab, "handheld", "cart"), (ba, "cart", "handheld")):
        x = frames(tiny_run, src)
        torch.testing.assert_close(tr(x), fit_histogram_match(tiny_run["data"], src, tgt)(x), atol=2e-3, rtol=0)
    # the same network as the anchored student (same parameters and shapes)
    st = load_config(StudentConfig, None, ["model.anchor=histogram_match", "model.ch=4", "model.n_blocks=1"]).model
    student = build_student(st, fit_histogram_match(tiny_run["data"], "handheld", "cart")).state_dict()
    assert {k: v.shape for k, v in ab.net.state_dict().items()} == {k: v.shape for k, v in student.items()}
    res = train_cyclegan(tiny_run["data"], load_config(CycleGANConfig, None, TINY_CG_ANCHORED), tmp_path / "cg",
                         progress=False)
    assert res.step == 2
    x = frames(tiny_run)
    y = load_translator(tmp_path / "cg")(x)
    assert y.shape == x.shape and (y - ab(x)).abs().max() > 1e-4
