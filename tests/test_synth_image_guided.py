"""Image-guided sampling (SDEdit): the start is the init image noised by the training schedule at the right
timestep, only the last ceil(strength x steps) steps run, and under an exact denoiser every sampler still lands
on the data; bad init images are refused in one sentence."""

from __future__ import annotations

import math

import pytest
import torch

from sonoshift.errors import SonoshiftError
from sonoshift.synth.config import SynthConfig, SynthDiffusion
from sonoshift.synth.dataset import Vocab
from sonoshift.synth.pipeline import SynthPipeline
from sonoshift.synth.schedulers import training_scheduler


class _Recorder(torch.nn.Module):
    """The exact v / eps denoiser of the one-image distribution ``c`` that also records every input it sees."""

    def __init__(self, c: torch.Tensor, alphas: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.c, self.a, self.prediction = c, alphas, prediction
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t, plane, ga, scanner):
        self.calls.append((x.clone(), t.clone()))
        a = self.a[t].view(-1, 1, 1, 1).float()
        eps = (x - a.sqrt() * self.c) / (1 - a).sqrt()
        return eps if self.prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * self.c


def _pipe(prediction: str = "v_prediction"):
    cfg = SynthConfig(diffusion=SynthDiffusion(prediction=prediction))
    alphas = training_scheduler(cfg.diffusion).alphas_cumprod
    c = torch.linspace(-0.9, 0.9, 64).view(1, 1, 8, 8)
    net = _Recorder(c, alphas, prediction)
    return SynthPipeline(net, cfg, Vocab(("a",), ("s",)), image_size=8), net, c, alphas


@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "unipc", "ddpm"])
def test_the_start_is_the_init_noised_at_the_first_kept_timestep(sampler: str) -> None:
    pipe, net, c, alphas = _pipe()
    init = torch.full((2, 1, 8, 8), 0.3)
    steps, strength = 10, 0.35
    pipe(plane="a", n=2, generator=torch.Generator().manual_seed(3), sampler=sampler, steps=steps, guidance=1.0,
         init=init, strength=strength)
    assert len(net.calls) == math.ceil(strength * steps)  # 4 of 10 steps run
    x0, t0 = net.calls[0]
    # the reference: the noise the generator draws first, mixed by the training schedule's alpha-bar at t0
    noise = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    a = alphas[int(t0[0])]
    expected = a.sqrt() * init + (1 - a).sqrt() * noise
    torch.testing.assert_close(x0, expected, atol=1e-5, rtol=0)
    # t0 is the 7th of 10 evenly spaced ("trailing") timesteps: the last 4 are kept
    assert int(t0[0]) == 399


@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "unipc", "ddpm"])
@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_an_exact_denoiser_still_returns_the_data_from_any_init(sampler: str, strength: float) -> None:
    pipe, _, c, _ = _pipe()
    init = -torch.ones(2, 1, 8, 8)
    x = pipe(plane="a", n=2, generator=torch.Generator().manual_seed(0), sampler=sampler, steps=20, guidance=1.0,
             init=init, strength=strength)
    torch.testing.assert_close(x, c.expand(2, 1, 8, 8), atol=1e-4, rtol=0)


def test_strength_zero_returns_the_init_and_runs_no_step() -> None:
    pipe, net, _, _ = _pipe()
    init = torch.rand(3, 1, 8, 8) * 2 - 1
    out = pipe(plane="a", n=3, generator=[torch.Generator().manual_seed(i) for i in range(3)], init=init,
               strength=0.0, batch_size=2)
    torch.testing.assert_close(out, init)
    assert net.calls == []
    net.train()  # a refused or empty call leaves a training network in training mode
    pipe(plane="a", n=3, generator=torch.Generator().manual_seed(0), init=init, strength=0.0)
    with pytest.raises(SonoshiftError):
        pipe(plane="a", n=3, generator=torch.Generator().manual_seed(0), init=init[:, :, :4], strength=0.5)
    assert net.training


def test_per_image_generators_make_each_image_independent_of_the_batch() -> None:
    pipe, _, _, _ = _pipe()
    pipe.unet = torch.nn.Module()  # a denoiser that is not exact, so the output depends on the noise
    pipe.unet.w = torch.nn.Parameter(torch.zeros(1))
    pipe.unet.forward = lambda x, t, p, g, s: 0.5 * x
    init = torch.rand(4, 1, 8, 8) * 2 - 1
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in range(4)]  # noqa: E731
    whole = pipe(plane="a", n=4, generator=gens(), init=init, strength=0.5, steps=6, batch_size=4)
    parts = pipe(plane="a", n=4, generator=gens(), init=init, strength=0.5, steps=6, batch_size=1)
    torch.testing.assert_close(whole, parts)


def test_bad_init_images_are_one_sentence() -> None:
    pipe, _, _, _ = _pipe()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(SonoshiftError, match=r"init images must be \(2, 1, 8, 8\)"):
        pipe(plane="a", n=2, generator=g, init=torch.zeros(2, 1, 4, 4), strength=0.5)
    with pytest.raises(SonoshiftError, match="NaN"):
        pipe(plane="a", n=2, generator=g, init=torch.full((2, 1, 8, 8), math.nan), strength=0.5)
    with pytest.raises(SonoshiftError, match=r"strength must be in \[0, 1\]"):
        pipe(plane="a", n=2, generator=g, init=torch.zeros(2, 1, 8, 8), strength=1.5)
