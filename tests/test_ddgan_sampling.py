"""DDGAN sampling: the step order, an oracle generator recovers its target, determinism, uncertainty maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig
from sonoshift.diffusion.sampler import sample, sample_with_uncertainty
from sonoshift.diffusion import ScheduleConfig, schedule_from_config

# zero_init off: the sampler tests need an untrained generator whose output depends on z and x_t.
TINY_G = UNetConfig(
    ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), nz=4, z_emb_dim=8, t_emb_dim=8, zero_init=False
)


class OracleG(nn.Module):
    """Predicts x_0 = the condition channel and records the step indices it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = UNetConfig(nz=3)
        self.calls: list[list[int]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.calls.append(t.tolist())
        assert x.shape[1] == 2 and z.shape == (x.shape[0], 3)
        return x[:, 1:2]


def test_oracle_generator_is_recovered_in_n_steps():
    s = schedule_from_config(ScheduleConfig(num_steps=4))
    cond = torch.linspace(-0.9, 0.9, 2 * 64).view(2, 1, 8, 8)
    G = OracleG()
    out = sample(G, s, cond, torch.Generator().manual_seed(0))
    assert G.calls == [[3, 3], [2, 2], [1, 1], [0, 0]]
    # the last step is the posterior mean at i = 0, which is x0_pred up to a ~1e-8 weight on x_1
    torch.testing.assert_close(out, cond, atol=1e-6, rtol=0)
    mean, std = sample_with_uncertainty(G, s, cond, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mean, cond, atol=1e-6, rtol=0)
    assert float(std.max()) < 1e-6


def test_partial_start_uses_the_initial_image():
    s = schedule_from_config(ScheduleConfig(num_steps=2, t_max=0.25, start="partial"))
    cond = torch.zeros(1, 1, 8, 8)
    seen = []

    class Spy(OracleG):
        def forward(self, x, t, z):
            seen.append(x[:, 0].clone())
            return super().forward(x, t, z)

    x_init = torch.full((1, 1, 8, 8), 0.8)
    sample(Spy(), s, cond, torch.Generator().manual_seed(0), x_init=x_init)
    # the first generator input is x_init noised to level N: mean sqrt(ab_N) * 0.8, far from pure noise
    ab = s.alpha_bars[-1].item()
    assert abs(seen[0].mean().item() - ab**0.5 * 0.8) < 4 * ((1 - ab) / 64) ** 0.5


def test_same_seed_same_samples_and_uncertainty_reference():
    torch.manual_seed(0)
    G = DDGANUNet(TINY_G, image_size=8).eval()
    s = schedule_from_config(ScheduleConfig(num_steps=2))
    cond = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = sample(G, s, cond, torch.Generator().manual_seed(5))
    b = sample(G, s, cond, torch.Generator().manual_seed(5))
    c = sample(G, s, cond, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == cond.shape and float(a.abs().max()) <= 1.0
    mean, std = sample_with_uncertainty(G, s, cond, 4, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    draws = np.stack([sample(G, s, cond, g).numpy() for _ in range(4)])
    np.testing.assert_allclose(mean.numpy(), draws.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std.numpy(), draws.std(axis=0), atol=1e-6)
    assert float(std.min()) >= 0 and float(std.max()) > 0  # z and noise make samples differ
    _, std1 = sample_with_uncertainty(G, s, cond, 1, torch.Generator().manual_seed(5))
    assert float(std1.abs().max()) == 0.0
    with pytest.raises(SonoshiftError, match="at least 1"):
        sample_with_uncertainty(G, s, cond, 0, torch.Generator())


def test_mean_of_samples_hook_for_harmonize():
    from sonoshift.inference.sampling import MeanOfSamples, uncertainty_to_uint8
    from sonoshift.methods.kinds import TranslatorBase

    class Stochastic:
        method, image_size, source_domain, target_domain, stochastic = "ddgan", (8, 8), "a", "b", True

        def uncertainty(self, x, k, generator=None):
            return x * 0 + k, torch.full_like(x, 0.2)

    class Deterministic(TranslatorBase):
        method, image_size, source_domain, target_domain = "cyclegan", (8, 8), "a", "b"

    hook = MeanOfSamples(Stochastic(), 5)
    x = torch.zeros(3, 1, 8, 8)
    assert torch.equal(hook(x), torch.full_like(x, 5.0))
    hook(x[:2])
    maps = hook.stacked()
    assert maps.shape == (5, 8, 8) and maps.dtype == np.uint8 and int(maps[0, 0, 0]) == round(0.2 * 127.5)
    assert hook.method == "ddgan" and hook.image_size == (8, 8)
    assert uncertainty_to_uint8(torch.ones(1, 1, 2, 2))[0, 0, 0] == 128  # std 1 ([-1, 1] units) = 128 grey levels
    with pytest.raises(SonoshiftError, match="deterministic"):
        MeanOfSamples(Deterministic(), 4)
