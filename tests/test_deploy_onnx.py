"""ONNX export of every translator, the ONNX Runtime translator, `harmonize --runtime onnx` and int8 quantization.

References are the PyTorch translators themselves (the exported graph is traced from their networks but runs in a
different engine) and, for the unrolled sampler, ``sampling.ddgan.sample`` fed by the same seeded generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from test_ddgan_method import SIZE, TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)
from test_harmonize import cine
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.config import load_config, to_dict
from sonoshift.deploy.export import export_onnx, read_metadata
from sonoshift.deploy.runtime import OnnxTranslator, load_runtime_translator
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.inference.harmonize import harmonize_inputs
from sonoshift.methods import load_translator
from sonoshift.methods.cascade import CascadeConfig, train_cascade
from sonoshift.methods.ddgan import DDGANConfig, train_ddgan
from sonoshift.inference.translate import geometry_from_checkpoint

TOL = 1e-3  # outputs in [-1, 1]


@pytest.fixture(scope="module")
def runs(tiny_run) -> dict[str, Path]:  # noqa: F811
    """A CycleGAN, a DDGAN and a partial-start cascade (16 px, 2 diffusion steps), one or two steps each."""
    root = tiny_run["root"]
    dd, cas = root / "onnx_dd", root / "onnx_cas"
    if not dd.exists():
        cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "train.max_steps=1"])
        train_ddgan(tiny_run["data"], cfg, dd, progress=False)
    if not cas.exists():
        cfg = load_config(CascadeConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "train.max_steps=1",
                                                "schedule.start=partial", "schedule.t_max=0.5"])
        train_cascade(tiny_run["data"], cfg, cas, progress=False)
    # histogram-anchored (x_0 = hm(source) + correction): the per-frame grey map is part of the exported graph;
    # with a low-passed correction (generator.correction_sigma), as the demo's anchored DDGAN and cascade
    # and the sample re-applied to the anchor as a local gain (output_gain), as the CPU configs
    anchored = ["generator.zero_init=true", "generator.output=residual", "anchor=histogram_match",
                "generator.correction_sigma=1.0", "output_gain=1.5"]
    dd_hm, cas_hm = root / "onnx_dd_hm", root / "onnx_cas_hm"
    if not dd_hm.exists():
        cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, *anchored, f"cyclegan={tiny_run['cg']}",
                                               "train.max_steps=2"])
        train_ddgan(tiny_run["data"], cfg, dd_hm, progress=False)
    if not cas_hm.exists():
        cfg = load_config(CascadeConfig, None, [*TINY_DDGAN, *anchored, f"cyclegan={tiny_run['cg']}",
                                                "generator.in_channels=3", "train.max_steps=2"])
        train_cascade(tiny_run["data"], cfg, cas_hm, progress=False)
    out = {"cyclegan": tiny_run["cg"], "ddgan": dd, "cascade": cas, "ddgan_hm": dd_hm, "cascade_hm": cas_hm}
    for name, run in list(out.items()):
        out[f"{name}.onnx"] = export_onnx(run, root / f"{name}.onnx")
    return out


def _x(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_cyclegan_onnx_equals_pytorch_at_other_batch_and_size(runs) -> None:
    torch_tr, onnx_tr = load_translator(runs["cyclegan"]), OnnxTranslator(runs["cyclegan.onnx"])
    assert (onnx_tr.method, onnx_tr.image_size) == ("cyclegan", (SIZE, SIZE))
    assert (onnx_tr.source_domain, onnx_tr.target_domain) == ("handheld", "cart")
    for b, h, w in ((1, SIZE, SIZE), (3, 24, 40)):  # traced at batch 1, SIZE x SIZE: batch and size are dynamic
        x = _x(b, h, w)
        y, y_onnx = torch_tr(x), onnx_tr(x)
        assert y_onnx.shape == x.shape and y_onnx.dtype == x.dtype
        assert (y - y_onnx).abs().max().item() <= TOL
    assert not onnx_tr.stochastic
    with pytest.raises(SonoshiftError, match="deterministic"):
        onnx_tr.uncertainty(_x(1, SIZE, SIZE), 2)


@pytest.mark.parametrize("method", ["ddgan", "cascade", "ddgan_hm", "cascade_hm"])
def test_unrolled_sampler_equals_pytorch_sampler_with_the_same_seed(runs, method: str) -> None:
    torch_tr, onnx_tr = load_translator(runs[method]), OnnxTranslator(runs[f"{method}.onnx"])
    assert onnx_tr.method == method.removesuffix("_hm") and onnx_tr.noise.steps == 2 and onnx_tr.stochastic
    assert (getattr(torch_tr, "anchor", None) is not None) == method.endswith("_hm")
    assert torch_tr.output_gain == (1.5 if method.endswith("_hm") else 0.0)
    graph = onnx.load(str(runs[f"{method}.onnx"])).graph
    assert [i.name for i in graph.input] == ["x", "noise", "z"]
    for b, h, w in ((1, SIZE, SIZE), (2, 32, 24)):
        x = _x(b, h, w, seed=1)
        y = torch_tr(x, generator=torch.Generator().manual_seed(7))
        y_onnx = onnx_tr(x, generator=torch.Generator().manual_seed(7))
        assert (y - y_onnx).abs().max().item() <= TOL
        # the noise inputs are used: another seed gives another sample (an anchored run two steps from its
        # zero-initialized correction moves little: it is the histogram-matched frame plus a small correction)
        moved = 1e-5 if method.endswith("_hm") else 10 * TOL
        assert (onnx_tr(x, generator=torch.Generator().manual_seed(8)) - y_onnx).abs().max().item() > moved
    # K samples: the same mean and std as the PyTorch translator's uncertainty()
    x = _x(2, SIZE, SIZE, seed=2)
    m, s = torch_tr.uncertainty(x, 3, torch.Generator().manual_seed(1))
    m2, s2 = onnx_tr.uncertainty(x, 3, torch.Generator().manual_seed(1))
    assert (m - m2).abs().max().item() <= TOL and (s - s2).abs().max().item() <= TOL and s.max() > 0


def test_metadata_carries_the_geometry_and_provenance(runs) -> None:
    model = onnx.load(str(runs["cyclegan.onnx"]))
    meta = read_metadata({p.key: p.value for p in model.metadata_props})
    ckpt = read_model(runs["cyclegan"])
    geo = geometry_from_checkpoint(ckpt.state, SIZE)
    assert meta["geometry"] == json.loads(json.dumps({"crop": to_dict(geo.crop), "resize": to_dict(geo.resize)}))
    assert meta["image_size"] == [SIZE, SIZE] and meta["step"] == ckpt.state["step"]
    assert meta["checkpoint"] == str(Path(ckpt.path).resolve()) and meta["quantization"] == "none"
    tr, exported = load_runtime_translator(runs["cyclegan.onnx"], "onnx")
    assert geometry_from_checkpoint(exported.state, SIZE) == geo and exported.path == runs["cyclegan.onnx"]


def test_harmonize_runtime_onnx_matches_torch(runs, tmp_path: Path) -> None:
    video = tmp_path / "loop.npy"
    np.save(video, cine(t=4, h=40, w=48))
    outs = {}
    for name, model, runtime in (("torch", runs["cyclegan"], "torch"), ("onnx_file", runs["cyclegan.onnx"], "onnx"),
                                 ("onnx_ckpt", runs["cyclegan"], "onnx")):
        harmonize_inputs(model, [video], tmp_path / name, frames=True, progress=False, runtime=runtime)
        outs[name] = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                               for p in sorted((tmp_path / name / "loop").glob("*.png"))])
    assert outs["torch"].shape == (4, *outs["torch"].shape[1:]) and outs["torch"].std() > 0
    for name in ("onnx_file", "onnx_ckpt"):  # uint8 rounding may differ by one grey level
        assert np.abs(outs[name].astype(int) - outs["torch"]).max() <= 1
    with pytest.raises(SonoshiftError, match="--runtime onnx"):
        harmonize_inputs(runs["cyclegan.onnx"], [video], tmp_path / "bad", progress=False)
    with pytest.raises(SonoshiftError, match="unknown runtime"):
        harmonize_inputs(runs["cyclegan"], [video], tmp_path / "bad", progress=False, runtime="tensorrt")


def test_cli_export_and_harmonize_with_onnx(runs, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", "onnx", str(runs["cyclegan"]), "--out", str(out), "--reverse"])
    assert res.exit_code == 0, res.output
    rev = OnnxTranslator(out)
    assert (rev.source_domain, rev.target_domain) == ("cart", "handheld")
    x = _x(2, SIZE, SIZE)
    assert (rev(x) - load_translator(runs["cyclegan"], reverse=True)(x)).abs().max().item() <= TOL
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), cine(t=1, h=40, w=48)[0])
    res = runner.invoke(app, ["harmonize", str(img), "-m", str(out), "-o", str(tmp_path / "h"), "--runtime", "onnx",
                              "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "h" / "frame.png").is_file()
    res = runner.invoke(app, ["export", "onnx", str(runs["cyclegan"]), "--out", str(tmp_path / "m.bin")])
    assert res.exit_code != 0 and "must end in .onnx" in str(res.exception)
    assert not (tmp_path / "m.bin").exists()


def test_foreign_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Conv2d(1, 1, 3), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"])
    with pytest.raises(SonoshiftError, match="no sonoshift metadata"):
        OnnxTranslator(path)
    with pytest.raises(SonoshiftError, match="does not exist"):
        OnnxTranslator(tmp_path / "missing.onnx")


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_int8_quantization_is_close_to_fp32_and_labelled(runs, tmp_path: Path, tiny_run, mode: str) -> None:  # noqa: F811
    out = export_onnx(runs["cyclegan"], tmp_path / f"{mode}.onnx", int8=mode,
                      calibration=tiny_run["data"] if mode == "static" else None)
    q, f = OnnxTranslator(out), OnnxTranslator(runs["cyclegan.onnx"])
    assert q.metadata["quantization"] == f"int8-{mode}" and q.metadata["geometry"] == f.metadata["geometry"]
    kinds = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert kinds & {"QuantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "QLinearConv"}
    x = _x(4, SIZE, SIZE, seed=3)
    err = (q(x) - f(x)).abs()
    # int8 changes the numbers, but only by a fraction of the output range ([-1, 1])
    assert 0 < err.max().item() and err.mean().item() < 0.1
    with pytest.raises(SonoshiftError, match="calibration"):
        export_onnx(runs["cyclegan"], tmp_path / "nocal.onnx", int8="static")
    assert not (tmp_path / "nocal.onnx").exists()


@pytest.mark.slow  # ORT's static calibration of the unrolled sampler graph takes minutes on 2 cores
def test_int8_static_stochastic_model(runs, tiny_run, tmp_path: Path) -> None:  # noqa: F811
    frames = np.load(tiny_run["data"] / "cache" / "train" / "handheld.npy")[:2]  # calibration frames as an array
    out = export_onnx(runs["ddgan"], tmp_path / "dd8.onnx", int8="static", calibration=frames)
    q, f = OnnxTranslator(out), OnnxTranslator(runs["ddgan.onnx"])
    x = _x(2, SIZE, SIZE, seed=4)
    err = (q(x, generator=torch.Generator().manual_seed(0)) - f(x, generator=torch.Generator().manual_seed(0))).abs()
    assert err.mean().item() < 0.15
