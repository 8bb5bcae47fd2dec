"""The CycleGAN -> diffusion cascade: round-trip condition, one-file translator, partial start, joint fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from test_ddgan_method import SIZE, TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)

from sonoshift.config import load_config
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.methods.cascade import CascadeConfig, build, train_cascade
from sonoshift.methods.ddgan import TargetFrames
from sonoshift.objectives.ddgan import ContentLoss
from sonoshift.diffusion.sampler import sample
from sonoshift.diffusion import schedule_from_config


def cascade_cfg(run, *extra: str) -> CascadeConfig:
    return load_config(CascadeConfig, None, [*TINY_DDGAN, f"cyclegan={run['cg']}", "train.max_steps=2", *extra])


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_condition_is_the_cyclegan_round_trip(tiny_run):
    cfg = cascade_cfg(tiny_run)
    ds = TargetFrames(tiny_run["data"], cfg.data)
    method = build(cfg, ds, torch.device("cpu"))
    forward, reverse = load_translator(tiny_run["cg"]), load_translator(tiny_run["cg"], reverse=True)
    x0 = _x()
    torch.testing.assert_close(method.condition(x0), forward(reverse(x0)))
    assert set(method.optimizers) == {"G", "D"}  # frozen CycleGAN: nothing else trains
    assert not any(p.requires_grad for p in method.modules["G_ab"].parameters())


def test_frozen_cascade_translator_is_cyclegan_then_refiner(tiny_run):
    out = tiny_run["root"] / "cascade_frozen"
    cfg = cascade_cfg(tiny_run)
    res = train_cascade(tiny_run["data"], cfg, out, progress=False)
    assert res.step == 2
    ckpt = read_model(out)
    assert ckpt.method == "cascade" and ckpt.state["metadata"]["condition"] == "cyclegan_round_trip"
    # the CycleGAN generator is stored, unchanged, inside the cascade checkpoint
    cg = read_model(tiny_run["cg"])
    for k, v in cg.module_state("G_ab", prefer_ema=False).items():
        torch.testing.assert_close(ckpt.weights[f"model/G_ab/{k}"], v, rtol=0, atol=0)
    tr = load_translator(out)
    assert tr.method == "cascade" and tr.image_size == (SIZE, SIZE)
    x = _x(1)
    y = tr(x, generator=torch.Generator().manual_seed(3))
    translated = load_translator(tiny_run["cg"])(x)
    ref = sample(tr.G, schedule_from_config(cfg.schedule), translated, torch.Generator().manual_seed(3))
    torch.testing.assert_close(y, ref)
    assert not torch.allclose(y, translated)  # the refiner did something


def test_partial_start_cascade(tiny_run):
    out = tiny_run["root"] / "cascade_partial"
    cfg = cascade_cfg(tiny_run, "schedule.t_max=0.25", "schedule.start=partial", "train.max_steps=1")
    train_cascade(tiny_run["data"], cfg, out, progress=False)
    tr = load_translator(out)
    x = _x(2)
    translated = load_translator(tiny_run["cg"])(x)
    s = schedule_from_config(cfg.schedule)
    ref = sample(tr.G, s, translated, torch.Generator().manual_seed(5), x_init=translated)
    torch.testing.assert_close(tr(x, generator=torch.Generator().manual_seed(5)), ref)
    assert read_model(out).state["metadata"]["schedule"]["start"] == "partial"


def test_content_loss_against_skimage():
    x, y = (_x(3) * 0.9), (_x(4) * 0.9)
    loss = ContentLoss("mse_ssim")
    assert loss.name == "mse+ssim"
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    a, b = ((x.numpy()[:, 0] + 1) / 2).astype(np.float64), ((y.numpy()[:, 0] + 1) / 2).astype(np.float64)
    ssim_ref = np.mean([
        structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
        for i in range(2)
    ])
    ref = float(np.mean((x.numpy() - y.numpy()) ** 2)) + 1 - ssim_ref
    assert loss(x, y).item() == pytest.approx(ref, rel=1e-4)
    auto = ContentLoss("auto", lpips_weights="/nonexistent/lpips.pth")
    assert auto.name in ("mse+ssim", "mse+lpips") and auto.reason
    with pytest.raises(SonoshiftError):
        ContentLoss("mse_lpips", lpips_weights="/nonexistent/lpips.pth")
    with pytest.raises(SonoshiftError):
        ContentLoss("psnr")


def test_joint_fine_tuning_trains_the_cyclegan_and_records_the_content_loss(tiny_run):
    out = tiny_run["root"] / "cascade_joint"
    cfg = cascade_cfg(tiny_run, "joint.enabled=true", "joint.content=mse_ssim", "joint.cyclegan_loss.pool_size=2",
                      "joint.lr_cyclegan=1e-3")
    res = train_cascade(tiny_run["data"], cfg, out, progress=False)
    assert {"loss_G", "content", "loss_CG", "D_a", "D_b", "loss_D"} <= set(res.losses)
    ckpt = read_model(out)
    meta = ckpt.state["metadata"]
    assert meta["joint"] is True and meta["content_loss"] == "mse+ssim"
    cg = read_model(tiny_run["cg"])
    changed = [not torch.equal(ckpt.weights[f"model/G_ab/{k}"], v) for k, v in cg.module_state("G_ab", False).items()]
    assert any(changed)  # the CycleGAN generator was fine-tuned
    assert any(k.startswith("model/D_a/") for k in ckpt.weights)
    # the translator uses the fine-tuned G_ab
    tr = load_translator(out)
    for k, v in tr.pre.state_dict().items():
        torch.testing.assert_close(v, ckpt.weights[f"model/G_ab/{k}"], rtol=0, atol=0)
    with pytest.raises(SonoshiftError, match="source and target"):
        build(cfg, TargetFrames(tiny_run["data"], cfg.data), torch.device("cpu"))


def test_content_loss_with_lpips_weights_from_a_folder(tmp_path):
    from sonoshift.metrics.lpips import LPIPS

    torch.manual_seed(0)
    ref_model = LPIPS("alex").eval()
    torch.save(ref_model.backbone.state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(ref_model.head_state_dict(), tmp_path / "alex.pth")
    loss = ContentLoss("auto", lpips_weights=str(tmp_path))
    assert loss.name == "mse+lpips" and loss.reason == "LPIPS weights loaded"
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 64, 64, generator=g) * 2 - 1, torch.rand(2, 1, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        ref = torch.mean((a - b) ** 2) + ref_model((a + 1) / 2, (b + 1) / 2).mean()
    torch.testing.assert_close(loss(a, b), ref)
    a.requires_grad_(True)
    loss(a, b).backward()  # differentiable for the joint fine-tuning
    assert a.grad is not None and float(a.grad.abs().sum()) > 0


def test_cli_train_cascade_and_ddgan(tiny_run, capsys):
    from sonoshift.cli.main import main

    out = tiny_run["root"] / "cli_cascade"
    with pytest.raises(SystemExit) as ok:
        main(["train", "cascade", "--data", str(tiny_run["data"]), "--out", str(out), "--cyclegan", str(tiny_run["cg"]),
              "-q", *TINY_DDGAN, "train.max_steps=1"])
    assert ok.value.code == 0
    assert read_model(out).method == "cascade"
    assert "trained 1 step (" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # no CycleGAN given: one sentence, exit status 1
        main(["train", "ddgan", "--data", str(tiny_run["data"]), "--out", str(tiny_run["root"] / "cli_dd"), "-q",
              *TINY_DDGAN, "cyclegan=''"])
    assert e.value.code == 1
    assert "cyclegan" in capsys.readouterr().err


def test_harmonize_dataset_with_samples_writes_uncertainty_maps(tiny_run, tmp_path):
    import csv
    import json

    import cv2
    from test_harmonize import make_prepared

    from sonoshift.inference.harmonize import harmonize_dataset
    from sonoshift.inference.translate import resize_batch, to_signed

    out = tiny_run["root"] / "cascade_frozen"
    if not out.exists():
        train_cascade(tiny_run["data"], cascade_cfg(tiny_run), out, progress=False)
    data = make_prepared(tmp_path / "prep")
    run = harmonize_dataset(out, data, tmp_path / "run", split="test", batch_size=8, progress=False, samples=3)
    assert json.loads((run / "run.json").read_text())["samples"] == 3
    with open(run / "outputs.csv") as f:
        rows = list(csv.DictReader(f))
    # independent path: the translator's K-sample mean and std on the cached frames, resized like harmonize does
    tr = load_translator(out)
    x = resize_batch(to_signed(np.load(data / "cache/test/handheld.npy")), tr.image_size)
    _, std = tr.uncertainty(x, 3, None)
    expect = (resize_batch(std, (32, 32))[:, 0] * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    mask = np.load(data / "cache/test/handheld.mask.npy") > 0
    for r, e, m in zip(rows, expect, mask):
        u = cv2.imread(str(run / r["uncertainty_path"]), cv2.IMREAD_GRAYSCALE)
        assert u.shape == (32, 32) and (u[~m] == 0).all()
        assert np.abs(u.astype(int) - e.astype(int))[m].max() <= 1
    assert expect[mask].max() > 0
    with pytest.raises(SonoshiftError, match="deterministic"):
        harmonize_dataset(tiny_run["cg"], data, tmp_path / "run_cg", split="test", progress=False, samples=2)


def test_differentiable_ssim_matches_skimage_and_has_gradients():
    from sonoshift.objectives.ddgan import differentiable_ssim

    g = torch.Generator().manual_seed(9)
    a = torch.rand(2, 1, 20, 24, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(2, 1, 20, 24, generator=g, dtype=torch.float64)).clamp(0, 1)
    a.requires_grad_(True)
    got = differentiable_ssim(a, b)
    for i in range(2):
        ref = structural_similarity(a[i, 0].detach().numpy(), b[i, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1)
        assert got[i].item() == pytest.approx(ref, abs=1e-9)
    got.sum().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
