"""Data parallel: `torchrun --nproc_per_node 2` on gloo gives the weights of one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sonoshift.engine.checkpoint import read_model

ARGS = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=4", "train.max_steps=3",
        "train.device=cpu", "train.tensorboard=false", "train.image_every=0", "train.log_every=1"]


def cli(prefix: list[str], data: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = prefix + ["-m", "sonoshift", "train", "cyclegan", "--data", str(data), "--out", str(out), "-q", *ARGS]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(tmp_path / "data")
    cli([sys.executable], data, tmp_path / "single")
    cli([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], data,
        tmp_path / "ddp")
    one, two = read_model(tmp_path / "single"), read_model(tmp_path / "ddp")
    assert one.state["world_size"] == 1 and two.state["world_size"] == 2
    assert one.weights.keys() == two.weights.keys()
    compared = 0
    for k, v in one.weights.items():
        if v.dim() == 4:  # conv kernels (biases before instance norm get ~0 gradients that Adam amplifies)
            torch.testing.assert_close(two.weights[k], v, rtol=1e-3, atol=2e-5)
            compared += 1
    assert compared > 10
    # Losses are averaged over ranks before logging: the logs agree too.
    l1 = [json.loads(x)["loss_G"] for x in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    l2 = [json.loads(x)["loss_G"] for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert l1 == pytest.approx(l2, rel=1e-4)
