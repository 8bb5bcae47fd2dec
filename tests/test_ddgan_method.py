"""The DDGAN method through the engine: condition from a frozen CycleGAN, checkpoints, exact resume, translator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sonoshift.config import load_config
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.methods.cyclegan import CycleGANConfig, train_cyclegan
from sonoshift.engine.schedules import cosine_factor
from sonoshift.methods.ddgan import DDGANConfig, TargetFrames, build, train_ddgan
from sonoshift.diffusion.sampler import sample
from sonoshift.diffusion import schedule_from_config

SIZE = 16
TINY_CG = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "model.d_layers=2", "loss.pool_size=2",
           "train.batch_size=2", "train.max_steps=2", "train.device=cpu", "train.precision=fp32",
           "train.tensorboard=false", "train.image_every=0", "train.log_every=1"]
# Plumbing tests want a generator whose output moves within 1-2 steps: random (not zero) output layers.
TINY_DDGAN = ["generator.zero_init=false",
              "generator.ch=8", "generator.ch_mult=[1,2]", "generator.attn_resolutions=[8]", "generator.nz=4",
              "generator.z_emb_dim=8", "generator.t_emb_dim=8", "discriminator.ch=8", "discriminator.ch_mult=[1,2]",
              "discriminator.t_emb_dim=8", "discriminator.mbstd_group=2", "schedule.num_steps=2", "loss.lazy_reg=2",
              "train.batch_size=2", "train.max_steps=3", "train.device=cpu", "train.precision=fp32",
              "train.tensorboard=false", "train.image_every=0", "train.log_every=1", "train.checkpoint_every=2",
              "train.ema_decay=0.9"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_dataset) -> dict[str, Path]:
    """A tiny prepared dataset and a CycleGAN trained on it for two steps."""
    root = tmp_path_factory.mktemp("ddgan")
    data = tiny_dataset(root / "data", n_src=6, size=SIZE, related=True)
    cg = root / "cg"
    train_cyclegan(data, load_config(CycleGANConfig, None, TINY_CG), cg, progress=False)
    return {"data": data, "cg": cg, "root": root}


def ddgan_cfg(tiny_run, *extra: str) -> DDGANConfig:
    return load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", *extra])


def test_cosine_factor_hand_values():
    assert cosine_factor(0, 100) == 1.0
    assert cosine_factor(50, 100) == pytest.approx(0.5)
    assert cosine_factor(100, 100) == pytest.approx(0.0, abs=1e-12)
    assert cosine_factor(25, 100, 0.1) == pytest.approx(0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2)


def test_condition_is_the_cyclegan_synthetic_source(tiny_run):
    cfg = ddgan_cfg(tiny_run)
    ds = TargetFrames(tiny_run["data"], cfg.data)
    assert len(ds) == 6 and ds[0]["target"].shape == (1, SIZE, SIZE)
    method = build(cfg, ds, torch.device("cpu"))
    x0 = torch.stack([ds[i]["target"] for i in range(3)])
    reverse = load_translator(tiny_run["cg"], reverse=True)  # G_{T->S}
    torch.testing.assert_close(method.condition(x0), reverse(x0))
    assert method.schedule.num_steps == 2
    with pytest.raises(SonoshiftError, match="translates"):
        build(ddgan_cfg(tiny_run, "data.source_domain=cart", "data.target_domain=handheld"), ds, torch.device("cpu"))
    with pytest.raises(SonoshiftError, match="cyclegan"):
        build(load_config(DDGANConfig, None, TINY_DDGAN), ds, torch.device("cpu"))


def test_train_checkpoint_translator_and_exact_resume(tiny_run):
    root = tiny_run["root"]
    cfg = ddgan_cfg(tiny_run)
    full = train_ddgan(tiny_run["data"], cfg, root / "dd_full", progress=False)
    assert full.step == 3 and {"loss_D", "loss_G", "r1"} <= set(full.losses)
    logs = [json.loads(line) for line in (root / "dd_full" / "log.jsonl").read_text().splitlines()]
    assert [r["loss_D"] > 0 for r in logs] == [True] * 3
    # R1 is lazy: steps 0 and 2 carry it (lazy_reg = 2), step 1 does not
    assert logs[0]["r1"] > 0 and logs[1]["r1"] == 0 and logs[2]["r1"] > 0

    # a crash after the step-2 checkpoint: copy the run without its step-3 checkpoint, then --resume
    import shutil

    shutil.copytree(root / "dd_full", root / "dd_resume")
    shutil.rmtree(root / "dd_resume" / "checkpoints" / "step_00000003")
    (root / "dd_resume" / "checkpoints" / "latest").write_text("step_00000002\n")
    resumed = train_ddgan(tiny_run["data"], cfg, root / "dd_resume", resume=True, progress=False)
    assert resumed.step == 3
    a = read_model(root / "dd_full").weights
    b = read_model(root / "dd_resume").weights
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)

    # the translator: EMA generator from the file, condition = the real source frame
    ckpt = read_model(root / "dd_full")
    assert ckpt.method == "ddgan" and ckpt.state["metadata"]["image_size"] == [SIZE, SIZE]
    assert ckpt.state["metadata"]["schedule"]["steps"] == 2
    tr = load_translator(root / "dd_full")
    assert tr.method == "ddgan" and tr.image_size == (SIZE, SIZE)
    assert (tr.source_domain, tr.target_domain) == ("handheld", "cart")
    ema = {k[len("ema/G/"):]: v for k, v in ckpt.weights.items() if k.startswith("ema/G/")}
    for k, v in tr.G.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)
    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y1 = tr(x, generator=torch.Generator().manual_seed(4))
    y2 = tr(x, generator=torch.Generator().manual_seed(4))
    assert y1.shape == x.shape and torch.equal(y1, y2) and float(y1.abs().max()) <= 1
    ref = sample(tr.G, schedule_from_config(cfg.schedule), x, torch.Generator().manual_seed(4))
    torch.testing.assert_close(y1, ref)
    mean, std = tr.uncertainty(x, 3, torch.Generator().manual_seed(4))
    assert mean.shape == std.shape == x.shape and float(std.max()) > 0
    # without a generator: the translator's own stream, seeded 0 once, continues from batch to batch
    d1, d2 = tr(x), tr(x)
    assert not torch.equal(d1, d2)
    again = load_translator(root / "dd_full")
    torch.testing.assert_close(again(x), d1, rtol=0, atol=0)
    torch.testing.assert_close(again(x), d2, rtol=0, atol=0)
    torch.testing.assert_close(d1, sample(tr.G, schedule_from_config(cfg.schedule), x, torch.Generator().manual_seed(0)))


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "name, steps, t_last, start",
    [
        ("paper/diffusion_t250_e125", 4, 1.0, "noise"),
        ("paper/diffusion_t170_e50", 6, 1.0, "noise"),
        ("paper/cascade_t250_e125", 4, 1.0, "noise"),
        ("paper/cascade_t170_e50", 6, 1.0, "noise"),
        ("paper/cascade_t250_e125_partial", 4, 0.25 * 0.999 + 0.001, "partial"),
        ("paper/cascade_t170_e50_partial", 4, 0.17 * 0.999 + 0.001, "partial"),
        ("cpu/ddgan", 4, 1.0, "noise"),
        ("cpu/cascade", 4, 1.0, "noise"),
    ],
)
def test_named_configs_load_with_both_readings_of_t(name, steps, t_last, start):
    from sonoshift.methods.cascade import CascadeConfig

    cfg = load_config(CascadeConfig if "cascade" in name else DDGANConfig, CONFIGS / f"{name}.yaml")
    s = schedule_from_config(cfg.schedule)
    assert s.num_steps == steps and cfg.schedule.start == start
    assert s.times[-1].item() == pytest.approx(t_last)
    if name.startswith("paper/"):
        assert cfg.data.size == 256 and cfg.train.batch_size == 128 and cfg.train.ema_decay == 0.999
        assert cfg.train.epochs == (125 if "e125" in name else 50)
        assert (cfg.optim.beta1, cfg.optim.beta2) == (0.5, 0.9)
