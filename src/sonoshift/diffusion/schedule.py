"""The few-step variance-preserving schedule of the denoising diffusion GAN, as pure functions.

A schedule is a chain of N + 1 noise levels x_0 (data) ... x_N (almost pure noise). Level i sits at the
continuous diffusion time t_i in [eps, 1] of the VP SDE with a linear beta(t) from ``beta_min`` to ``beta_max``:

    alpha_bar(t) = exp(-0.5 t^2 (beta_max - beta_min) - t beta_min)
    beta_0 = 1e-8,   beta_i = 1 - alpha_bar(t_i) / alpha_bar(t_{i-1})   (i = 1..N)

and the chain's own cumulative product ``alpha_bars[i] = prod_{j<=i} (1 - beta_j)`` drives the forward process
(so level 0 is the data up to a noise variance of 1e-8). For N = 4 uniform steps this gives
betas = [1e-8, 0.478, 0.849, 0.956, 0.987].

Where the times come from (the two readings of the paper's "t = 250 / 170"):

* ``uniform_times(N)``: t_i = (i / N)(1 - eps) + eps (DESIGN.md §4; the default, N = 4);
* ``grid_times(k)``: a step size k on a 1000-step grid, i.e. grid indices 0, k, 2k, ... and the end of the grid
  (k = 250 gives the same 4 steps as N = 4; k = 170 gives 6 steps, the last one shorter);
* ``t_max < 1`` (both functions): the chain stops at a fraction of the diffusion, for a partial-noising start —
  refinement begins from an input image noised to level N instead of from pure noise (t = 250 -> t_max = 0.25).

Everything here is a function of tensors; a ``Schedule`` is an immutable bundle of 1-D float64 tensors. Functions
that draw noise take a ``torch.Generator`` on the same device as their inputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from sonoshift.config import NonNegFloat, PosFloat, PosInt, Range, Validated
from sonoshift.errors import SonoshiftError

BETA_0 = 1e-8  # the first "step" is no step: level 0 is the data itself, up to a negligible variance


@dataclass(frozen=True)
class ScheduleConfig(Validated):
    """How the chain of noise levels is built (see the module docstring).

    num_steps: N, number of denoising steps (used when ``stride`` is None).
    beta_min, beta_max: the linear beta(t) of the VP SDE (per unit time).
    eps: the smallest diffusion time, t_0.
    stride: PosInt | None = 250" -> 250 -> 4 steps).
    grid: length of that grid (1000).
    t_max: Annotated[float, Range(0, 1, lo_open=True)] = to pure noise; < 1 for a partial-noising start).
    start: "noise" starts sampling from N(0, I); "partial" starts from the input image noised to level N
        (needs an input image at sampling time, e.g. the CycleGAN output in the cascade).
    """

    num_steps: PosInt = 4
    beta_min: NonNegFloat = 0.1
    beta_max: PosFloat = 20.0
    eps: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 1e-3
    stride: PosInt | None = None
    grid: PosInt = 1000
    t_max: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    start: Literal["noise", "partial"] = "noise"


@dataclass(frozen=True)
class Schedule:
    """An immutable chain of N + 1 levels; every field is a 1-D float64 CPU tensor of length N + 1.

    times: continuous diffusion times t_i; betas: per-step variances (betas[0] = 1e-8);
    alphas = 1 - betas; alpha_bars: cumulative products of alphas (signal fraction at level i).
    """

    times: torch.Tensor
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @property
    def num_steps(self) -> int:
        """N, the number of denoising steps (levels 0..N)."""
        return int(self.times.numel()) - 1


def vp_alpha_bar(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """Signal fraction alpha_bar(t) = exp(-0.5 t^2 (beta_max - beta_min) - t beta_min) of the VP SDE; t in [0, 1]."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.exp(-0.5 * t**2 * (beta_max - beta_min) - t * beta_min)


def _check_range(eps: float, t_max: float) -> None:
    if not 0.0 <= eps < 1.0:
        raise SonoshiftError(f"schedule eps must be in [0, 1), got {eps}.")
    if not 0.0 < t_max <= 1.0:
        raise SonoshiftError(f"schedule t_max must be in (0, 1], got {t_max}.")


def uniform_times(num_steps: int, eps: float = 1e-3, t_max: float = 1.0) -> torch.Tensor:
    """N + 1 evenly spaced times t_i = (i / N) t_max (1 - eps) + eps, i = 0..N (float64)."""
    if num_steps < 1:
        raise SonoshiftError(f"schedule num_steps must be at least 1, got {num_steps}.")
    _check_range(eps, t_max)
    u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps * t_max
    return u * (1.0 - eps) + eps


def grid_times(stride: int, grid: int = 1000, eps: float = 1e-3, t_max: float = 1.0) -> torch.Tensor:
    """Times at grid indices 0, k, 2k, ... below ``t_max * grid``, then ``t_max * grid`` itself (float64).

    A step size k on a ``grid``-step discretisation: k = 250 on 1000 gives 4 equal steps, k = 170 gives 6 steps
    (0, 170, ..., 850, 1000). Index j maps to t = (j / grid)(1 - eps) + eps, as ``uniform_times`` does.
    """
    if grid < 1 or stride < 1 or stride > grid:
        raise SonoshiftError(f"schedule stride must be in [1, grid={grid}], got {stride}.")
    _check_range(eps, t_max)
    end = t_max * grid
    idx = torch.arange(0, math.ceil(end / stride), dtype=torch.float64) * stride
    idx = torch.cat([idx, torch.tensor([end], dtype=torch.float64)])
    return idx / grid * (1.0 - eps) + eps


def make_schedule(times: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> Schedule:
    """The chain for increasing ``times`` (N + 1 values in (0, 1]): betas, alphas and cumulative alpha_bars."""
    times = torch.as_tensor(times, dtype=torch.float64).flatten()
    if times.numel() < 2 or not bool((times[1:] > times[:-1]).all()):
        raise SonoshiftError("schedule times must hold at least two strictly increasing values.")
    ab = vp_alpha_bar(times, beta_min, beta_max)
    betas = torch.cat([torch.tensor([BETA_0], dtype=torch.float64), 1.0 - ab[1:] / ab[:-1]])
    alphas = 1.0 - betas
    return Schedule(times=times, betas=betas, alphas=alphas, alpha_bars=torch.cumprod(alphas, 0))


def schedule_from_config(cfg: ScheduleConfig) -> Schedule:
    """Build the schedule a ``ScheduleConfig`` describes (uniform N steps, or a stride on a grid)."""
    if cfg.start == "noise" and cfg.t_max < 1.0:
        raise SonoshiftError(
            f"schedule t_max={cfg.t_max} < 1 needs start='partial' (pure noise is only the marginal at t = 1)."
        )
    if cfg.stride is not None:
        times = grid_times(cfg.stride, cfg.grid, cfg.eps, cfg.t_max)
    else:
        times = uniform_times(cfg.num_steps, cfg.eps, cfg.t_max)
    return make_schedule(times, cfg.beta_min, cfg.beta_max)


def describe(cfg: ScheduleConfig) -> dict[str, object]:
    """A JSON-ready summary of the schedule a config builds (steps, times, betas) for run metadata."""
    s = schedule_from_config(cfg)
    return {
        **dataclasses.asdict(cfg),
        "steps": s.num_steps,
        "times": [round(float(v), 6) for v in s.times],
        "betas": [float(v) for v in s.betas],
    }


def _at(values: torch.Tensor, i: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[i] as a (B, 1, 1, ...) tensor on ``like``'s device and dtype, to broadcast over a batch."""
    i = torch.as_tensor(i, device=values.device).long().flatten()
    out = values[i.cpu()].to(device=like.device, dtype=like.dtype)
    if out.numel() == 1 and like.shape[0] != 1:
        out = out.expand(like.shape[0])
    return out.view(-1, *([1] * (like.dim() - 1)))


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def q_sample(s: Schedule, x0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Level ``i`` (0..N, one per batch item) of clean ``x0``: sqrt(ab_i) x0 + sqrt(1 - ab_i) noise."""
    ab = _at(s.alpha_bars, i, x0)
    return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise


def q_sample_pairs(
    s: Schedule, x0: torch.Tensor, i: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A forward pair (x_i, x_{i+1}) for step indices ``i`` in 0..N-1 (one per batch item).

    x_i ~ q(x_i | x0) and x_{i+1} = sqrt(alpha_{i+1}) x_i + sqrt(beta_{i+1}) noise; both shaped like ``x0``.
    """
    x_i = q_sample(s, x0, i, _randn_like(x0, generator))
    i_next = torch.as_tensor(i).long() + 1
    x_next = _at(s.alphas, i_next, x0).sqrt() * x_i + _at(s.betas, i_next, x0).sqrt() * _randn_like(x0, generator)
    return x_i, x_next


def posterior_mean_var(
    s: Schedule, x0: torch.Tensor, x_next: torch.Tensor, i: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the Gaussian q(x_i | x_{i+1}, x_0) for step indices ``i`` in 0..N-1.

    mean = sqrt(ab_i) beta_{i+1} / (1 - ab_{i+1}) x0 + sqrt(alpha_{i+1}) (1 - ab_i) / (1 - ab_{i+1}) x_{i+1};
    var = beta_{i+1} (1 - ab_i) / (1 - ab_{i+1}) (shape (B, 1, ..., 1)).
    """
    i = torch.as_tensor(i).long()
    ab, ab_next = _at(s.alpha_bars, i, x0), _at(s.alpha_bars, i + 1, x0)
    beta, alpha = _at(s.betas, i + 1, x0), _at(s.alphas, i + 1, x0)
    c0 = ab.sqrt() * beta / (1.0 - ab_next)
    c1 = alpha.sqrt() * (1.0 - ab) / (1.0 - ab_next)
    var = beta * (1.0 - ab) / (1.0 - ab_next)
    return c0 * x0 + c1 * x_next, var


def sample_posterior(
    s: Schedule, x0: torch.Tensor, x_next: torch.Tensor, i: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw x_i ~ q(x_i | x_{i+1}, x0); at i = 0 (the last denoising step) the mean is returned without noise."""
    mean, var = posterior_mean_var(s, x0, x_next, i)
    nonzero = _at((torch.arange(s.num_steps + 1) > 0).double(), i, x0)
    return mean + nonzero * var.sqrt() * _randn_like(x0, generator)


def start_sample(
    s: Schedule,
    shape_like: torch.Tensor,
    generator: torch.Generator | None,
    x_init: torch.Tensor | None = None,
) -> torch.Tensor:
    """The state x_N where sampling begins: N(0, I) shaped like ``shape_like``, or ``x_init`` noised to level N.

    ``x_init`` (in [-1, 1]) gives the partial-noising start of refinement: sqrt(ab_N) x_init + sqrt(1-ab_N) noise.
    """
    noise = _randn_like(shape_like, generator)
    if x_init is None:
        return noise
    n = torch.full((x_init.shape[0],), s.num_steps, dtype=torch.long)
    return q_sample(s, x_init, n, noise)
