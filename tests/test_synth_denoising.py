"""The per-step denoising diagnosis (synth/evaluation/denoising.py) against denoisers whose error is known."""

from __future__ import annotations

import math

import pytest
import torch

from sonoshift.synth.config import SynthDiffusion
from sonoshift.synth.evaluation.denoising import denoising_error, noise_estimate
from sonoshift.synth.schedulers import training_scheduler


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_exact_denoiser_scores_zero_and_a_blind_one_scores_one(prediction: str) -> None:
    alphas = training_scheduler(SynthDiffusion(prediction=prediction)).alphas_cumprod
    c = torch.linspace(-1.0, 0.8, 64).view(1, 1, 8, 8)   # one image: its exact denoiser is known in closed form
    x0 = c.expand(6, 1, 8, 8).clone()

    def exact(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = alphas[t].view(-1, 1, 1, 1)
        eps = (xt - a.sqrt() * c) / (1 - a).sqrt()
        return eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * c

    rows = denoising_error(exact, x0, alphas, [10, 500, 900], prediction, torch.Generator().manual_seed(0),
                           batch_size=4)
    assert [r["t"] for r in rows] == [10, 500, 900]
    for r in rows:
        assert r["all"] < 1e-6 and r["background"] < 1e-6 and r["foreground"] < 1e-6
        assert r["noise_var"] == pytest.approx(float(1 - alphas[r["t"]]))

    # A predictor whose implied noise is 0 removes nothing: its noise MSE is E[eps^2] = 1. For eps prediction
    # that is the output 0; for v prediction the output -sqrt(1 - a) x_t / sqrt(a) (sqrt(a) v + sqrt(1 - a) x_t = 0).
    def blind(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = alphas[t].view(-1, 1, 1, 1)
        return torch.zeros_like(xt) if prediction == "epsilon" else -(1 - a).sqrt() / a.sqrt() * xt

    big = c.expand(200, 1, 8, 8).clone()
    rows = denoising_error(blind, big, alphas, [300], prediction, torch.Generator().manual_seed(1))
    assert rows[0]["all"] == pytest.approx(1.0, abs=0.03)


def test_background_split_hand_values() -> None:
    alphas = training_scheduler(SynthDiffusion()).alphas_cumprod
    x0 = torch.full((1, 1, 2, 2), 0.5)
    x0[0, 0, 0, 0] = -1.0                       # one background pixel of four
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    # eps-prediction of the constant 0: error = eps^2 per pixel, so background = eps[0,0,0,0]^2 exactly.
    rows = denoising_error(lambda xt, t: torch.zeros_like(xt), x0, alphas, [100], "epsilon", g)
    assert rows[0]["background"] == pytest.approx(float(eps[0, 0, 0, 0] ** 2))
    assert rows[0]["foreground"] == pytest.approx(float(eps.flatten()[1:].pow(2).mean()))
    assert rows[0]["all"] == pytest.approx(float(eps.pow(2).mean()))
    none = denoising_error(lambda xt, t: torch.zeros_like(xt), x0.abs(), alphas, [100], "epsilon",
                           torch.Generator().manual_seed(3))
    assert math.isnan(none[0]["background"])


def test_noise_estimate_inverts_v() -> None:
    a = torch.tensor([0.3, 0.9])
    x0, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    s, r = a.sqrt().view(-1, 1, 1, 1), (1 - a).sqrt().view(-1, 1, 1, 1)
    xt, v = s * x0 + r * eps, s * eps - r * x0
    torch.testing.assert_close(noise_estimate(v, xt, a, "v_prediction"), eps)
    torch.testing.assert_close(noise_estimate(eps, xt, a, "epsilon"), eps)
