"""The training loop: reproducibility, exact resume after a crash, Ctrl-C, accumulation, LR schedule, logs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from sonoshift.config import load_config, to_dict
from sonoshift.data.datasets import UnpairedDataset
from sonoshift.engine.checkpoint import list_checkpoints, read_full
from sonoshift.engine.loop import MethodBase, train
from sonoshift.errors import SonoshiftError
from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig, build

TINY = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "loss.pool_size=3", "train.log_every=1",
        "train.image_every=0", "train.tensorboard=false", "train.device=cpu"]


def run(data: Path, out: Path, overrides: list[str], *, resume: bool = False, method_cls=CycleGAN):
    cfg = load_config(CycleGANConfig, None, TINY + overrides)
    ds = UnpairedDataset(data, "train", "handheld", "cart", seed=cfg.train.seed)
    method = method_cls(cfg, torch.device("cpu"), (32, 32))
    result = train(method, ds, cfg.train, out, full_config=to_dict(cfg), resume=resume, progress=False)
    return method, result


def weights(method) -> dict[str, torch.Tensor]:
    out = {f"{n}.{k}": v.clone() for n, m in method.modules.items() for k, v in m.state_dict().items()}
    for name, opt in method.optimizers.items():
        for i, st in opt.state_dict()["state"].items():
            out.update({f"opt.{name}.{i}.{k}": v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)})
    return out


def log_losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


class Crash(RuntimeError):
    pass


class CrashingCycleGAN(CycleGAN):
    """Dies inside step 4 (after the step-3 checkpoint), half-way through its work, like a killed process."""

    def train_step(self, batch, ctx):
        if ctx.step == 4:
            raise Crash("simulated crash")
        return super().train_step(batch, ctx)


class InterruptedCycleGAN(CycleGAN):
    """Sends itself SIGINT during step 2 (0-based), as a user pressing Ctrl-C would."""

    def train_step(self, batch, ctx):
        out = super().train_step(batch, ctx)
        if ctx.step == 1:
            signal.raise_signal(signal.SIGINT)
        return out


def test_same_seed_gives_identical_losses_and_weights(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    m1, _ = run(data, tmp_path / "a", ["train.batch_size=2", "train.max_steps=3"])
    m2, _ = run(data, tmp_path / "b", ["train.batch_size=2", "train.max_steps=3"])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in rows]
    assert strip(log_losses(tmp_path / "a")) == strip(log_losses(tmp_path / "b"))
    w1, w2 = weights(m1), weights(m2)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    m3, _ = run(data, tmp_path / "c", ["train.batch_size=2", "train.max_steps=3", "train.seed=1"])
    assert not torch.equal(weights(m3)["G_ab.model.1.weight"], w1["G_ab.model.1.weight"])


def test_crash_then_resume_matches_straight_run_exactly(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    # 8 source frames, batch 2 -> 4 steps per epoch: the 6 steps cross an epoch boundary (new pairing).
    common = ["train.batch_size=2", "train.max_steps=6", "train.checkpoint_every=3", "train.decay_epochs=1",
              "train.epochs=2"]
    straight, res = run(data, tmp_path / "straight", common)
    assert res.step == 6 and not res.interrupted
    with pytest.raises(Crash):
        run(data, tmp_path / "crashed", common, method_cls=CrashingCycleGAN)
    assert [p.name for p in list_checkpoints(tmp_path / "crashed")] == ["step_00000003"]
    resumed, res2 = run(data, tmp_path / "crashed", common, resume=True)
    assert res2.step == 6
    w1, w2 = weights(straight), weights(resumed)
    assert w1.keys() == w2.keys()
    diff = [k for k in w1 if not torch.equal(w1[k], w2[k])]
    assert diff == [], f"differs after resume: {diff[:5]}"
    # The pools (contents and RNG) are restored too, so the logged losses of steps 4..6 agree as well.
    l1 = {r["step"]: r["loss_G"] for r in log_losses(tmp_path / "straight")}
    l2 = {r["step"]: r["loss_G"] for r in log_losses(tmp_path / "crashed")}
    assert l1 == l2


def test_ctrl_c_saves_and_returns_cleanly_then_resumes(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    common = ["train.batch_size=2", "train.max_steps=4", "train.checkpoint_every=100"]
    before = signal.getsignal(signal.SIGINT)
    _, res = run(data, tmp_path / "run", common, method_cls=InterruptedCycleGAN)
    assert res.interrupted and res.step == 2
    assert res.checkpoint is not None and res.checkpoint.name == "step_00000002"
    _, _, state = read_full(res.checkpoint)
    assert state["step"] == 2 and state["method"] == "cyclegan"
    assert signal.getsignal(signal.SIGINT) is before  # the loop's handler is removed again
    _, res2 = run(data, tmp_path / "run", common, resume=True)
    assert res2.step == 4 and not res2.interrupted


class ToyMethod(MethodBase):
    """A linear model y = w * mean(source) + b fitted to mean(target) with SGD: gradients are never ~0 noise,
    so accumulation and data-parallel results can be compared tightly (Adam would amplify rounding noise)."""

    name = "toy"

    def __init__(self) -> None:
        self.net = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.net.weight.fill_(0.3)
            self.net.bias.fill_(-0.1)
        self.modules = {"net": self.net}
        self.optimizers = {"sgd": torch.optim.SGD(self.net.parameters(), lr=0.1)}
        self.ema = {}

    def train_step(self, batch, ctx):
        total = 0.0
        for mb in ctx.micro_batches(batch):
            x = mb["source"].mean(dim=(1, 2, 3))[:, None]
            y = mb["target"].mean(dim=(1, 2, 3))[:, None]
            loss = (self.net(x) - y).square().mean()
            ctx.backward(loss)
            total += loss.item() / ctx.accum_steps
        ctx.optimizer_step("sgd")
        return {"loss": total}


def run_toy(data: Path, out: Path, overrides: list[str]) -> ToyMethod:
    cfg = load_config(CycleGANConfig, None, TINY + overrides).train
    method = ToyMethod()
    train(method, UnpairedDataset(data, "train", "handheld", "cart"), cfg, out, progress=False)
    return method


def test_gradient_accumulation_matches_full_batch(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    full = run_toy(data, tmp_path / "full", ["train.batch_size=4", "train.max_steps=4"])
    acc = run_toy(data, tmp_path / "acc", ["train.batch_size=4", "train.accum_steps=4", "train.max_steps=4"])
    start = torch.tensor([0.3, -0.1])
    w_full = torch.cat([full.net.weight.flatten(), full.net.bias])
    w_acc = torch.cat([acc.net.weight.flatten(), acc.net.bias])
    assert (w_full - start).abs().max() > 1e-2  # it did learn something
    torch.testing.assert_close(w_acc, w_full, rtol=1e-5, atol=1e-6)
    # CycleGAN too (pool off): conv weights after 2 steps of 2 micro-batches vs one batch of 4.
    m1, _ = run(data, tmp_path / "cg_full", ["train.batch_size=4", "train.max_steps=2", "loss.pool_size=0"])
    m2, _ = run(data, tmp_path / "cg_acc", ["train.batch_size=4", "train.accum_steps=2", "train.max_steps=2",
                                            "loss.pool_size=0"])
    w1, w2 = weights(m1), weights(m2)
    # Adam normalises each gradient, so only well-conditioned tensors are compared: conv kernels (biases in
    # front of instance norm get zero gradient up to rounding, which Adam blows up to full-size steps).
    for k in w1:
        if not k.startswith("opt.") and w1[k].dim() == 4:
            torch.testing.assert_close(w2[k], w1[k], rtol=1e-3, atol=2e-5)


def test_lr_schedule_is_applied_and_logged(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    run(data, tmp_path / "run", ["train.batch_size=2", "train.epochs=2", "train.decay_epochs=1",
                                 "train.lr=1e-3"])
    lrs = [r["lr"] for r in log_losses(tmp_path / "run")]
    # 8 steps, last 4 decay: factors 1,1,1,1,1,.75,.5,.25 (the LR logged is the one used by that step).
    assert lrs == pytest.approx([1e-3] * 5 + [7.5e-4, 5e-4, 2.5e-4])


def test_existing_run_without_resume_is_refused(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    run(data, tmp_path / "run", ["train.batch_size=2", "train.max_steps=1"])
    with pytest.raises(SonoshiftError, match="already holds a training run"):
        run(data, tmp_path / "run", ["train.batch_size=2", "train.max_steps=1"])
    with pytest.raises(SonoshiftError, match="holds no checkpoint"):
        run(data, tmp_path / "empty", ["train.batch_size=2", "train.max_steps=1"], resume=True)


def test_batch_larger_than_dataset_is_a_clear_error(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data", n_src=3)
    with pytest.raises(SonoshiftError, match="fewer than train.batch_size"):
        run(data, tmp_path / "run", ["train.batch_size=4"])


def test_build_reads_image_size_from_dataset(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    cfg = load_config(CycleGANConfig, None, TINY)
    m = build(cfg, UnpairedDataset(data, "train", "handheld", "cart"), torch.device("cpu"))
    assert m.image_size == (32, 32) and m.metadata()["image_size"] == [32, 32]
