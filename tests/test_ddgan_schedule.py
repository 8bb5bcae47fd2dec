"""The few-step VP schedule: DESIGN.md's N = 4 values, invariants, both readings of "t", posterior formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sonoshift.errors import SonoshiftError
from sonoshift.diffusion import (
    ScheduleConfig,
    grid_times,
    make_schedule,
    posterior_mean_var,
    q_sample_pairs,
    sample_posterior,
    schedule_from_config,
    start_sample,
    uniform_times,
)


def _hand_betas(times: list[float], b_min: float = 0.1, b_max: float = 20.0) -> list[float]:
    ab = [math.exp(-0.5 * t * t * (b_max - b_min) - t * b_min) for t in times]
    return [1e-8] + [1.0 - ab[i] / ab[i - 1] for i in range(1, len(ab))]


def test_n4_betas_match_design_values():
    s = schedule_from_config(ScheduleConfig())
    assert s.num_steps == 4
    # DESIGN.md §4: "For N = 4 the betas are about [1e-8, .478, .849, .956, .987]".
    np.testing.assert_allclose(s.betas.numpy(), [1e-8, 0.478, 0.849, 0.956, 0.987], atol=1e-3, rtol=0)
    assert s.betas[0].item() == pytest.approx(1e-8, rel=1e-12)
    # and exactly the formula with t_i = (i/N)(1 - eps) + eps, beta_i = 1 - ab(t_i)/ab(t_{i-1}).
    times = [(i / 4) * (1 - 1e-3) + 1e-3 for i in range(5)]
    np.testing.assert_allclose(s.times.numpy(), times, rtol=1e-12)
    np.testing.assert_allclose(s.betas.numpy(), _hand_betas(times), rtol=1e-10)


def test_schedule_invariants():
    for n in (1, 2, 4, 8):
        s = make_schedule(uniform_times(n))
        assert s.times[0].item() == pytest.approx(1e-3) and s.times[-1].item() == pytest.approx(1.0)
        assert bool(((s.betas > 0) & (s.betas < 1)).all())
        assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())
        np.testing.assert_allclose(s.alpha_bars.numpy(), np.cumprod(1 - s.betas.numpy()), rtol=1e-12)
        # the chain ends where the SDE ends: alpha_bar(1) = exp(-0.5 * 19.9 - 0.1), up to beta_0 and t_0
        assert s.alpha_bars[-1].item() == pytest.approx(math.exp(-0.5 * 19.9 - 0.1), rel=1e-3)


def test_grid_reading_of_t():
    # "t = 250": a step size of 250 on a 1000-step grid is exactly the N = 4 uniform schedule.
    torch.testing.assert_close(grid_times(250), uniform_times(4), rtol=1e-12, atol=0)
    # "t = 170": 0, 170, ..., 850 and the end of the grid -> 6 steps, the last one shorter.
    t = grid_times(170)
    idx = [0, 170, 340, 510, 680, 850, 1000]
    np.testing.assert_allclose(t.numpy(), [j / 1000 * (1 - 1e-3) + 1e-3 for j in idx], rtol=1e-12)
    s = schedule_from_config(ScheduleConfig(stride=170))
    assert s.num_steps == 6


def test_partial_reading_of_t():
    cfg = ScheduleConfig(num_steps=4, t_max=0.25, start="partial")
    s = schedule_from_config(cfg)
    assert s.num_steps == 4
    assert s.times[-1].item() == pytest.approx(0.25 * (1 - 1e-3) + 1e-3)
    # the last level keeps a real share of the signal (refinement, not generation from scratch)
    assert 0.4 < s.alpha_bars[-1].item() < 0.6
    with pytest.raises(SonoshiftError, match="start='partial'"):
        schedule_from_config(ScheduleConfig(t_max=0.25))
    with pytest.raises(SonoshiftError):
        uniform_times(0)
    with pytest.raises(SonoshiftError):
        grid_times(2000)


def _direct_posterior(ab_i: float, beta: float, x0: float, x_next: float) -> tuple[float, float]:
    """Condition the joint Gaussian of (x_i, x_{i+1}) given x0 on x_{i+1} (covariance algebra, no formula reuse)."""
    a, c = math.sqrt(ab_i), math.sqrt(1 - beta)
    mu = np.array([a * x0, c * a * x0])
    v_i = 1 - ab_i
    cov = np.array([[v_i, c * v_i], [c * v_i, c * c * v_i + beta]])
    mean = mu[0] + cov[0, 1] / cov[1, 1] * (x_next - mu[1])
    var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
    return mean, var


def test_posterior_matches_direct_gaussian_conditioning():
    s = schedule_from_config(ScheduleConfig(num_steps=4))
    x0 = torch.tensor([0.7, -0.3, 0.1, 0.9], dtype=torch.float64).view(4, 1, 1, 1)
    x_next = torch.tensor([-0.2, 0.5, 1.3, -1.1], dtype=torch.float64).view(4, 1, 1, 1)
    i = torch.tensor([0, 1, 2, 3])
    mean, var = posterior_mean_var(s, x0, x_next, i)
    for b in range(4):
        k = int(i[b])
        m_ref, v_ref = _direct_posterior(
            s.alpha_bars[k].item(), s.betas[k + 1].item(), x0[b].item(), x_next[b].item()
        )
        assert mean[b].item() == pytest.approx(m_ref, rel=1e-9, abs=1e-12)
        assert var[b].item() == pytest.approx(v_ref, rel=1e-9, abs=1e-15)


def test_forward_pairs_have_the_right_marginals():
    s = schedule_from_config(ScheduleConfig())
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1, 1, 1), 0.6, dtype=torch.float64)
    for k in range(4):
        x_i, x_next = q_sample_pairs(s, x0, torch.full((n,), k), g)
        for x, lvl in ((x_i, k), (x_next, k + 1)):
            ab = s.alpha_bars[lvl].item()
            assert x.mean().item() == pytest.approx(math.sqrt(ab) * 0.6, abs=0.01)
            assert x.var().item() == pytest.approx(1 - ab, abs=0.01)
        # one step of the chain: Cov(x_i, x_{i+1}) = sqrt(alpha_{i+1}) Var(x_i)
        cov = ((x_i - x_i.mean()) * (x_next - x_next.mean())).mean().item()
        ref = math.sqrt(s.alphas[k + 1].item()) * (1 - s.alpha_bars[k].item())
        assert cov == pytest.approx(ref, abs=0.01)


def test_posterior_sampling_statistics_and_determinism():
    s = schedule_from_config(ScheduleConfig())
    n = 100_000
    x0 = torch.full((n, 1, 1, 1), -0.4, dtype=torch.float64)
    x_next = torch.full((n, 1, 1, 1), 0.8, dtype=torch.float64)
    i = torch.full((n,), 2)
    draws = sample_posterior(s, x0, x_next, i, torch.Generator().manual_seed(1))
    mean, var = posterior_mean_var(s, x0[:1], x_next[:1], i[:1])
    assert draws.mean().item() == pytest.approx(mean.item(), abs=0.01)
    assert draws.var().item() == pytest.approx(var.item(), rel=0.02)
    again = sample_posterior(s, x0, x_next, i, torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
    # the last step (i = 0) adds no noise
    last = sample_posterior(s, x0[:8], x_next[:8], torch.zeros(8), torch.Generator().manual_seed(2))
    m0, _ = posterior_mean_var(s, x0[:8], x_next[:8], torch.zeros(8))
    assert torch.equal(last, m0)


def test_start_sample_noise_and_partial():
    s = schedule_from_config(ScheduleConfig(t_max=0.25, start="partial"))
    like = torch.zeros(2, 1, 8, 8)
    x_init = torch.full((2, 1, 8, 8), 0.5)
    a = start_sample(s, like, torch.Generator().manual_seed(3), x_init)
    b = start_sample(s, like, torch.Generator().manual_seed(3), x_init)
    assert torch.equal(a, b)
    noise = torch.randn(like.shape, generator=torch.Generator().manual_seed(3))
    ab = s.alpha_bars[-1].item()
    torch.testing.assert_close(a, math.sqrt(ab) * x_init + math.sqrt(1 - ab) * noise)
    torch.testing.assert_close(start_sample(s, like, torch.Generator().manual_seed(3)), noise)
