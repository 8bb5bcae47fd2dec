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
    # untrained (max_steps=0 would mean "train for the epochs"; lr 1e-12 keeps Adam's steps below 1e-11): the
    # zero-initialized head leaves exactly the anchor, which must be the numpy histogram map fitted
    # independently on the dataset's target training frames (baselines.histogram_match, scikit-image's method)
    cfg = load_config(StudentConfig, None, [*ANCHORED, "train.lr=1e-12"])
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
    # dynamic int8 leaves the histogram map's lookup tables in float (quantized, they merged levels: NaN)
    q = OnnxTranslator(export_onnx(tmp_path / "st", tmp_path / "q.onnx", int8="dynamic"))(x)
    assert torch.isfinite(q).all() and (q - y).abs().mean().item() < 0.05


def test_anchor_needs_the_mobile_unet_and_a_fitted_map() -> None:
    with pytest.raises(SonoshiftError, match="mobile U-Net"):
        build_student(load_config(StudentConfig, None, ["model.anchor=histogram_match", "model.arch=resnet"]).model)
    with pytest.raises(SonoshiftError, match="fitted histogram_match map"):
        build_student(load_config(StudentConfig, None, ["model.anchor=histogram_match"]).model)


def test_anchored_cyclegan_is_the_student_network_without_a_teacher(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(CycleGANConfig, None, [*TINY_CG_ANCHORED, "train.lr=1e-12"])
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


# --- the depth-affine anchor (the anchor of the demo's DDGAN / cascade teachers) ---

DEPTH = [*TINY_STUDENT, "model.anchor=depth_affine"]


def affine_reference(x: torch.Tensor, stats: list[list[float]]) -> torch.Tensor:
    """The depth-wise linear grey map in numpy from its four per-row statistics (mean/std of source and target
    grey levels 0..255 per row, fitted at the input's height): level 0 (outside the fan) stays 0."""
    ms, ss, mt, st = (np.asarray(s, dtype=np.float64)[None, None, :, None] for s in stats)
    v = (x.double().numpy() + 1) * 127.5
    y = np.where(v >= 0.5, np.clip((v - ms) * st / ss + mt, 0, 255), 0.0)
    return torch.from_numpy(y / 127.5 - 1).float()


def test_untrained_depth_affine_student_is_the_depth_affine_baseline(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    # untrained (lr 1e-12, see above): exactly the depth_affine baseline fitted on the prepared training split (what the report shows as
    # the anchor alone), and that map is the row-wise linear map of its stored statistics (numpy reference)
    from sonoshift.baselines.depth_affine import fit_depth_affine
    from sonoshift.engine.checkpoint import read_model

    cfg = load_config(StudentConfig, None, [*DEPTH, "train.lr=1e-12"])
    distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "st0", progress=False)
    st = load_translator(tmp_path / "st0")
    assert isinstance(st.net, AnchoredGenerator)
    x = frames(tiny_run)
    base = fit_depth_affine(tiny_run["data"], "handheld", "cart")
    torch.testing.assert_close(st(x), base(x), atol=1e-5, rtol=0)
    meta = read_model(tmp_path / "st0").state["metadata"]["anchor"]
    assert meta["kind"] == "depth_affine" and len(meta["stats"][0]) == x.shape[-2]  # one statistic per row
    torch.testing.assert_close(st(x), affine_reference(x, meta["stats"]), atol=1e-5, rtol=0)
    assert (st(x) - x).abs().max() > 0.05  # the map does something on these two simulated scanners


def test_depth_affine_student_trains_and_its_onnx_graph_holds_the_anchor(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(StudentConfig, None, [*DEPTH, "train.lr=1e-2"])
    distill(tiny_run["cg"], tiny_run["data"], cfg, tmp_path / "st", progress=False)
    st = load_translator(tmp_path / "st")
    x = frames(tiny_run)
    y = st(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert (y - st.net.anchor(x)).abs().max() > 1e-3  # two steps moved it off its anchor
    path = export_onnx(tmp_path / "st", tmp_path / "st.onnx")
    ort = OnnxTranslator(path)
    assert (ort(x) - y).abs().max().item() <= 1e-3
    # another height: the graph resamples the anchor's row profiles itself (the translator does the same in torch)
    x2 = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False).clamp(-1, 1)
    assert (ort(x2) - st(x2)).abs().max().item() <= 1e-3
    # the anchor lives inside the graph: the frame is its only input (nothing precomputed outside it)
    import onnx

    assert [i.name for i in onnx.load(str(path)).graph.input] == ["x"]


def test_depth_affine_cyclegan_is_the_student_network_without_a_teacher(tiny_run, tmp_path: Path) -> None:  # noqa: F811
    from sonoshift.baselines.depth_affine import fit_depth_affine

    cfg = load_config(CycleGANConfig, None, [*TINY_CG_ANCHORED, "model.anchor=depth_affine", "train.lr=1e-12"])
    train_cyclegan(tiny_run["data"], cfg, tmp_path / "cg0", progress=False)
    ab, ba = load_translator(tmp_path / "cg0"), load_translator(tmp_path / "cg0", reverse=True)
    for tr, src, tgt in ((ab, "handheld", "cart"), (ba, "cart", "handheld")):  # each starts as its own map
        x = frames(tiny_run, src)
        torch.testing.assert_close(tr(x), fit_depth_affine(tiny_run["data"], src, tgt)(x), atol=1e-5, rtol=0)
    student = load_config(StudentConfig, None, ["model.anchor=depth_affine", "model.ch=4", "model.n_blocks=1"]).model
    net = build_student(student, fit_depth_affine(tiny_run["data"], "handheld", "cart").net).state_dict()
    assert {k: v.shape for k, v in ab.net.state_dict().items()} == {k: v.shape for k, v in net.items()}


def test_student_anchor_must_match_the_map_given(tiny_run) -> None:  # noqa: F811
    hm = fit_histogram_match(tiny_run["data"], "handheld", "cart")
    with pytest.raises(SonoshiftError, match="map given is histogram_match"):
        build_student(load_config(StudentConfig, None, ["model.anchor=depth_affine"]).model, hm)
