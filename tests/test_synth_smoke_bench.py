"""bench/synth_smoke.py: the smoke-sized runs of the GPU configs change the budget only, never the method."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from sonoshift.config import load_config
from sonoshift.synth.config import SynthConfig

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("synth_smoke", ROOT / "bench" / "synth_smoke.py")
smoke = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke)


@pytest.mark.parametrize("path", smoke.CONFIGS)
def test_budget_overrides_keep_the_configs_method(path: str) -> None:
    full = load_config(SynthConfig, ROOT / path, [])
    small = load_config(SynthConfig, ROOT / path, smoke.budget_overrides(full, 6, 2, 2))
    # the network, conditioning, data and sampler are the GPU config's own
    for part in ("model", "condition", "data"):
        assert getattr(small, part) == getattr(full, part), part
    assert dataclasses.replace(small.diffusion, lr_warmup_steps=full.diffusion.lr_warmup_steps) == full.diffusion
    assert small.diffusion.lr_warmup_steps < 6
    if full.latent.enabled:
        assert dataclasses.replace(small.latent, autoencoder_steps=full.latent.autoencoder_steps) == full.latent
        assert 0 < small.latent.autoencoder_steps < small.train.max_steps
    else:
        assert small.latent == full.latent
    t = small.train
    assert (t.max_steps, t.batch_size, t.device, t.precision, t.num_workers, t.threads) == (6, 2, "cpu", "fp32", 0, 2)
    assert (t.lr, t.ema_decay, t.seed, t.grad_clip) == (full.train.lr, full.train.ema_decay, full.train.seed,
                                                        full.train.grad_clip)


def test_gpu_and_latent_configs_use_the_loss_the_cpu_runs_chose() -> None:
    """What the simulator runs taught (docs/synth.md): v-prediction with a plain MSE and FiLM conditioning."""
    cpu = load_config(SynthConfig, ROOT / "configs/cpu/synth.yaml", [])
    for path in [*smoke.CONFIGS, "configs/cpu/synth_latent.yaml"]:
        cfg = load_config(SynthConfig, ROOT / path, [])
        assert cfg.diffusion.prediction == cpu.diffusion.prediction == "v_prediction"
        assert cfg.diffusion.loss_weight == cpu.diffusion.loss_weight == "none"
        assert cfg.model.time_norm == cpu.model.time_norm == "scale_shift"
        assert cfg.condition.drop_ga == cpu.condition.drop_ga
