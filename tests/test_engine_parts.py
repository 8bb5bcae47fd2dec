"""Engine pieces: LR schedule, EMA, device/precision choice, checkpoint files (atomic, keep-last, no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from sonoshift.engine import checkpoint as ck
from sonoshift.engine.device import autocast, resolve_precision, select_device
from sonoshift.engine.ema import EMA
from sonoshift.engine.logging import image_grid
from sonoshift.engine.schedules import constant_then_linear
from sonoshift.errors import SonoshiftError


def test_constant_then_linear_values() -> None:
    assert [constant_then_linear(s, 10, 4) for s in range(10)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert all(constant_then_linear(s, 10, 0) == 1 for s in range(10))
    assert constant_then_linear(10, 10, 4) == 0.0 and constant_then_linear(99, 10, 4) == 0.0


def test_ema_follows_the_formula() -> None:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(2.0)
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.9 * 1 + 0.1 * 2))
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.9 * 1.1 + 0.1 * 2))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_device_and_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert select_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert select_device("auto").type in ("cpu", "mps")
        with pytest.raises(SonoshiftError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(SonoshiftError, match="not a valid torch device"):
        select_device("gpu7")
    assert resolve_precision("auto", cpu) is None and resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(SonoshiftError, match="precision"):
        resolve_precision("fp8", cpu)
    with autocast(cpu, torch.bfloat16):
        y = torch.nn.functional.linear(torch.ones(1, 4), torch.ones(2, 4))
    assert y.dtype == torch.bfloat16


def _write(run: Path, step: int, keep: int = 2) -> Path:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.9))
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    opt_t, opt_j = ck.optimizer_to_saved("adam", opt)
    rng_t, rng_j = ck.rng_to_saved()
    model = ck.module_tensors("model/net", net.state_dict())
    return ck.write_checkpoint(run, step, model=model, train={**opt_t, **rng_t},
                               state={"method": "toy", "step": step, "optimizers": {"adam": opt_j}, "rng": rng_j},
                               keep_last=keep), net, opt


def test_checkpoint_roundtrip_keep_last_and_latest(tmp_path: Path) -> None:
    for s in (1, 2, 3):
        path, net, opt = _write(tmp_path, s)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000003"
    assert ck.find_checkpoint(tmp_path) == path
    model, train, state = ck.read_full(path)
    assert state["step"] == 3
    assert torch.equal(model["model/net/weight"], net.weight.detach())
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=5.0)
    ck.optimizer_from_saved("adam", opt2, train, state["optimizers"]["adam"])
    assert opt2.param_groups[0]["lr"] == 1e-3 and opt2.param_groups[0]["betas"] == (0.5, 0.9)
    for (a, b) in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the model file describes itself (method + light state in the safetensors header), no pickle anywhere
    with safe_open(str(path / ck.MODEL_FILE), framework="pt") as f:
        meta = f.metadata()
    assert meta["method"] == "toy" and json.loads(meta["state"])["step"] == 3 and "rng" not in json.loads(meta["state"])
    m = ck.read_model(path / ck.MODEL_FILE)
    assert m.method == "toy" and m.has_module("net") and not m.has_module("net", ema=True)
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_rng_state_roundtrip() -> None:
    import random

    import numpy as np

    t, j = ck.rng_to_saved()
    j = json.loads(json.dumps(j))  # must survive JSON
    a = (torch.rand(3), np.random.rand(3), random.random())
    ck.rng_from_saved(t, j)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


def test_bad_checkpoints_give_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(SonoshiftError, match="cannot be read"):
        ck.read_model(bad)
    with pytest.raises(SonoshiftError, match="holds no sonoshift checkpoint"):
        ck.find_checkpoint(tmp_path / "checkpoints" if (tmp_path / "checkpoints").mkdir() is None else tmp_path)
    with pytest.raises(SonoshiftError, match="not a .safetensors file"):
        (tmp_path / "x.pt").write_bytes(b"")
        ck.find_checkpoint(tmp_path / "x.pt")
    path, _, _ = _write(tmp_path / "run", 1)
    with pytest.raises(SonoshiftError, match="do not fit the model"):
        ck.load_module(ck.read_model(path), "net", torch.nn.Linear(4, 2))


def test_image_grid_layout() -> None:
    rows = {"a": -torch.ones(3, 1, 4, 5), "b": torch.ones(2, 1, 4, 5)}
    g = image_grid(rows, pad=2)
    assert g.shape == (1, 2 * (4 + 2) + 2, 3 * (5 + 2) + 2)
    assert g[0, 2, 2] == 0.0 and g[0, 2 + 6, 2] == 1.0 and g[0, 8, 2 + 2 * 7] == 0.0  # missing b[2] stays 0
