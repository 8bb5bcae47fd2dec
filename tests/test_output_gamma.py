"""The task-aware output gamma of the diffusion translators (methods.output_gamma, issue 12): the map against a
numpy reference, the choice rule on hand values, the critic's entropy against scipy's, the direction a critic with
a known preference pulls the choice, and a trained run whose checkpoint carries the choice into PyTorch and ONNX
inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from test_checkpoint_select import with_val_split
from test_ddgan_method import TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)
from torch import nn

from sonoshift.config import load_config
from sonoshift.deploy.export import export_onnx
from sonoshift.deploy.runtime import OnnxTranslator
from sonoshift.downstream.segmenter import ModelConfig, Segmenter, build_unet, load_segmenter, save_segmenter
from sonoshift.engine.checkpoint import STATE_FILE, find_checkpoint, read_model, update_metadata, verify_files
from sonoshift.errors import SonoshiftError
from sonoshift.inference.translate import to_signed
from sonoshift.methods import load_translator
from sonoshift.methods.ddgan import DDGANConfig, train_ddgan
from sonoshift.methods.output_gamma import GAMMAS, apply_gamma, choose_gamma, critic_entropy, gamma_entropies


def test_apply_gamma_equals_the_power_law_on_the_0_1_scale():
    y = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1  # a little outside [-1, 1]
    for g in (0.8, 1.1, 1.4):
        ref = 2.0 * np.clip((y.double().numpy() + 1) / 2, 0, 1) ** g - 1.0
        assert np.abs(apply_gamma(y, g).double().numpy() - ref).max() < 1e-6
    assert apply_gamma(y, 1.0) is y  # 1: the output untouched, not even clamped
    ends = torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2)
    assert torch.equal(apply_gamma(ends, 1.3), ends)  # black stays black, white stays white
    ramp = torch.linspace(-1, 1, 50).view(1, 1, 1, 50)
    assert (apply_gamma(ramp, 1.2).diff(dim=-1) > 0).all()  # every level keeps its order
    assert (apply_gamma(ramp, 1.2) <= ramp + 1e-7).all() and (apply_gamma(ramp, 0.8) >= ramp - 1e-7).all()


def test_choose_gamma_takes_the_lowest_entropy_and_breaks_ties_toward_one():
    assert choose_gamma({0.9: 0.30, 1.0: 0.25, 1.1: 0.20, 1.2: 0.22}) == 1.1
    assert choose_gamma({0.8: 0.2, 1.1: 0.2, 1.3: 0.2}) == 1.1
    assert choose_gamma({0.9: float("nan"), 1.0: 0.5, 1.2: 0.4}) == 1.2  # NaN never wins
    with pytest.raises(SonoshiftError, match="no gamma has a finite critic entropy"):
        choose_gamma({1.0: float("nan")})


class _Sign(nn.Module):
    """Two classes with logits (a x, -a x): surest at black and white, least sure at mid-grey (x = 0)."""

    def __init__(self, a: float = 3.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a), requires_grad=False)  # a parameter: predict_logits reads its device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a * x, -self.a * x], dim=1)


def _critic(size: int = 16) -> Segmenter:
    return Segmenter(model=_Sign(), classes=("dark", "bright"), image_size=size)


def test_critic_entropy_is_the_pixel_weighted_mean_of_scipy_entropies_inside_the_field_of_view():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    masks = np.zeros(frames.shape, bool)
    masks[0, 2:10, 3:12] = True
    masks[1, :, :5] = True  # frames with different pixel counts: pixels, not frames, are averaged
    x = frames.astype(np.float64) / 127.5 - 1
    p_dark = 1 / (1 + np.exp(-6 * x))  # softmax of (3x, -3x), written out
    ent = scipy_entropy(np.stack([p_dark, 1 - p_dark]), axis=0)
    assert critic_entropy(_critic(), frames, masks, batch=2) == pytest.approx(ent[masks].mean(), rel=1e-5)
    assert np.isnan(critic_entropy(_critic(), frames, np.zeros_like(masks)))


class _Identity:
    image_size = (16, 16)  # a translator says its input size (``inference.translate.run_translator`` reads it)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x


@pytest.mark.parametrize(("level", "expected"), [(140, 0.8), (100, 1.4)])
def test_the_choice_follows_what_the_critic_is_sure_of(level: int, expected: float):
    # frames a little above mid-grey: brightening (gamma < 1) moves them away from where the critic is unsure;
    # a little below: darkening does
    frames = np.full((4, 16, 16), level, np.uint8)
    masks = np.ones(frames.shape, bool)
    ent = gamma_entropies(_Identity(), _critic(), frames, masks, GAMMAS)
    assert list(ent) == list(GAMMAS) and choose_gamma(ent) == expected
    assert ent[1.0] == pytest.approx(critic_entropy(_critic(), frames, masks), rel=1e-6)


def _saved_critic(path, size: int, domain: str = "cart") -> None:
    torch.manual_seed(0)
    cfg = {"model": {"channels": [4, 8], "strides": [2], "num_res_units": 0, "dropout": 0.0}}
    model = build_unet(ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0), 3)
    save_segmenter(Segmenter(model=model, classes=("background", "a", "b"), image_size=size, config=cfg,
                             info={"domain": domain}), path)


def test_a_trained_run_stores_the_critics_choice_and_applies_it_everywhere(tiny_run, tmp_path):  # noqa: F811
    data, frames = with_val_split(tiny_run, tmp_path)
    _saved_critic(tmp_path / "critic", 16)
    run = tmp_path / "run"
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}",
                                          f"task_critic={tmp_path / 'critic'}"])
    train_ddgan(data, cfg, run, progress=False)
    # the table: one row per gamma, recomputed here from the untouched outputs with numpy and scipy
    rows = [r.split(",") for r in (run / "output_gamma.csv").read_text().splitlines()]
    assert rows[0] == ["gamma", "critic_entropy", "chosen"] and [float(r[0]) for r in rows[1:]] == list(GAMMAS)
    plain = load_translator(find_checkpoint(run))
    plain.output_gamma = 1.0
    y = plain(to_signed(frames), generator=torch.Generator().manual_seed(0)).double().numpy()[:, 0]
    critic = load_segmenter(tmp_path / "critic")
    from sonoshift.downstream.segmenter import predict_proba

    for g, e, _ in rows[1:]:
        levels = np.round(np.clip((y + 1) / 2, 0, 1) ** float(g) * 255).astype(np.uint8)
        ref = np.mean([scipy_entropy(p, axis=0).mean() for p in predict_proba(critic, list(levels))])
        assert float(e) == pytest.approx(ref, rel=1e-4)
    chosen = [float(r[0]) for r in rows[1:] if r[2] == "1"]
    assert len(chosen) == 1 and chosen[0] == choose_gamma({float(r[0]): float(r[1]) for r in rows[1:]})
    g = chosen[0]
    assert g != 1.0  # this critic moves the outputs, so the checks below see the gamma applied
    # stored in the model file's header (a model file copied alone keeps it) and in state.json, checksums intact
    ckpt = find_checkpoint(run)
    assert read_model(run).state["metadata"]["output_gamma"] == g
    state = json.loads((ckpt / STATE_FILE).read_text())
    assert state["metadata"]["output_gamma"] == g and state["metadata"]["output_gamma_choice"]["frames"] == 4
    verify_files(ckpt)
    # inference applies it: the loaded translator's outputs are the untouched ones under the power law
    tr = load_translator(run)
    assert tr.output_gamma == g
    out = tr(to_signed(frames), generator=torch.Generator().manual_seed(0)).double().numpy()[:, 0]
    assert np.abs(out - (2 * np.clip((y + 1) / 2, 0, 1) ** g - 1)).max() < 1e-5
    # ... and so does the exported graph
    onnx_tr = OnnxTranslator(export_onnx(run, tmp_path / "run.onnx"))
    x = to_signed(frames)
    a = tr(x, generator=torch.Generator().manual_seed(3))
    b = onnx_tr(x, generator=torch.Generator().manual_seed(3))
    assert (a - b).abs().max().item() <= 1e-3
    # choosing again starts from the untouched outputs: the same table, the same choice
    before = (run / "output_gamma.csv").read_text()
    from sonoshift.methods.output_gamma import tune_output_gamma

    assert tune_output_gamma(run, data, "handheld", tmp_path / "critic") == g
    assert (run / "output_gamma.csv").read_text() == before


def test_a_wrong_critic_stops_before_training(tiny_run, tmp_path):  # noqa: F811
    (tmp_path / "not_a_critic").mkdir()
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}",
                                          f"task_critic={tmp_path / 'not_a_critic'}"])
    with pytest.raises(SonoshiftError, match="is not a segmenter folder"):
        train_ddgan(tiny_run["data"], cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(SonoshiftError, match="must be > 0"):
        load_config(DDGANConfig, None, [*TINY_DDGAN, "task_gammas=[0.0,1.1]"])


def test_a_critic_of_another_domain_stops_before_training(tiny_run, tmp_path):  # noqa: F811
    _saved_critic(tmp_path / "source_critic", 16, domain="handheld")
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}",
                                          f"task_critic={tmp_path / 'source_critic'}"])
    with pytest.raises(SonoshiftError, match="trained on domain 'handheld', but the translator's target is 'cart'"):
        train_ddgan(tiny_run["data"], cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_without_validation_source_frames_the_outputs_stay_as_trained(tiny_run, tmp_path, capsys):  # noqa: F811
    _saved_critic(tmp_path / "critic", 16)
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}",
                                          f"task_critic={tmp_path / 'critic'}"])
    run = tmp_path / "run"
    train_ddgan(tiny_run["data"], cfg, run, progress=False)  # the tiny dataset has no val split
    assert "keeps its outputs as they are" in " ".join(capsys.readouterr().err.split())  # console: stderr, wrapped
    assert not (run / "output_gamma.csv").exists() and load_translator(run).output_gamma == 1.0
    assert "output_gamma" not in read_model(run).state["metadata"]


def test_update_metadata_refuses_damaged_weights_and_non_checkpoints(tiny_run, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    train_ddgan(tiny_run["data"], load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}"]), run,
                progress=False)
    ckpt = find_checkpoint(run)
    update_metadata(ckpt, note="kept")
    assert read_model(run).state["metadata"]["note"] == "kept"
    verify_files(ckpt)
    with pytest.raises(SonoshiftError, match="is not a checkpoint folder"):
        update_metadata(tmp_path, note="x")
    blob = bytearray((ckpt / "model.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(SonoshiftError):
        update_metadata(ckpt, note="y")
