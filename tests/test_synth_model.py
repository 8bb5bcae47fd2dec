"""The synthesizer's model pieces: condition embedding with null tokens, condition dropout, schedulers."""

from __future__ import annotations

import math

import pytest
import torch

from sonoshift.synth.config import SynthDiffusion, SynthModel
from sonoshift.synth.method import drop_conditions, jitter_ga
from sonoshift.synth.model import ConditionEmbedding, SynthUNet
from sonoshift.synth.schedulers import SAMPLERS, sampling_scheduler, training_scheduler

TINY = SynthModel(block_out_channels=(8, 16), attention=(False, True), attention_head_dim=8, norm_num_groups=4)


def test_null_tokens_and_ga_embedding() -> None:
    torch.manual_seed(0)
    emb = ConditionEmbedding(n_planes=3, n_scanners=2, dim=16, proj_dim=8, ga_scale=10.0)
    with torch.no_grad():
        emb.ga_null.normal_()
    z = torch.zeros(2, dtype=torch.int64)
    nan = torch.full((2,), math.nan)
    e_null = emb(z, nan, z)
    # All-null rows are identical and equal the sum of the three null vectors.
    torch.testing.assert_close(e_null[0], e_null[1])
    torch.testing.assert_close(e_null[0], emb.plane.weight[0] + emb.scanner.weight[0] + emb.ga_null)
    # A known GA replaces the GA null vector by the MLP of its sinusoid; nearby GAs give nearby embeddings.
    e_ga = emb(z, torch.tensor([24.0, 24.01]), z)
    assert not torch.allclose(e_ga[0], e_null[0])
    assert (e_ga[0] - e_ga[1]).norm() < 0.25 * (e_ga[0] - emb(z, torch.tensor([34.0, 34.0]), z)[0]).norm()
    # Plane index k picks row k of the plane table.
    e_p = emb(torch.tensor([2, 0]), nan, z)
    torch.testing.assert_close(e_p[0] - e_p[1], emb.plane.weight[2] - emb.plane.weight[0])


def test_unet_shapes_and_patch() -> None:
    for patch in (1, 2):
        m = SynthUNet(SynthModel(**{**TINY.__dict__, "patch": patch}), channels=1, sample_size=16, n_planes=2,
                      n_scanners=2)
        x = torch.randn(3, 1, 16, 16)
        y = m(x, torch.tensor([1, 500, 999]), torch.tensor([0, 1, 2]), torch.tensor([math.nan, 20.0, 30.0]),
              torch.tensor([0, 1, 2]))
        assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError):
        SynthUNet(SynthModel(**{**TINY.__dict__, "patch": 3}), channels=1, sample_size=16, n_planes=2, n_scanners=2)


def test_drop_conditions_rates() -> None:
    n = 20000
    plane, scanner = torch.ones(n, dtype=torch.int64), torch.full((n,), 2, dtype=torch.int64)
    ga = torch.full((n,), 25.0)
    g = torch.Generator().manual_seed(0)
    p, a, s = drop_conditions(plane, ga, scanner, 0.0, 0.0, g)
    assert torch.equal(p, plane) and torch.equal(a, ga) and torch.equal(s, scanner)
    p, a, s = drop_conditions(plane, ga, scanner, 1.0, 0.0, g)
    assert (p == 0).all() and torch.isnan(a).all() and (s == 0).all()
    p, a, s = drop_conditions(plane, ga, scanner, 0.1, 0.2, g)
    every = (p == 0) & torch.isnan(a) & (s == 0)
    # P(all dropped) = 0.1 + 0.9 * 0.2^3; P(plane dropped) = 0.1 + 0.9 * 0.2. Binomial std < 0.004 at n = 20000.
    assert abs(float(every.float().mean()) - (0.1 + 0.9 * 0.008)) < 0.015
    assert abs(float((p == 0).float().mean()) - 0.28) < 0.015
    assert abs(float(torch.isnan(a).float().mean()) - 0.28) < 0.015
    # Independence: plane and scanner drops co-occur at 0.1 + 0.9 * 0.04, not at 0.28.
    assert abs(float(((p == 0) & (s == 0)).float().mean()) - 0.136) < 0.015


def test_schedulers_share_the_training_noise_schedule() -> None:
    d = SynthDiffusion()
    ref = training_scheduler(d).alphas_cumprod
    # squaredcos_cap_v2 (Nichol & Dhariwal): alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2).
    s, T = 0.008, 1000
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(i + 1) / f(i), 0.999) for i in range(T)]
    expect = torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0)
    torch.testing.assert_close(ref.double(), expect, rtol=1e-4, atol=1e-6)
    for name in SAMPLERS:
        sch = sampling_scheduler(name, d)
        torch.testing.assert_close(sch.alphas_cumprod, ref)
        sch.set_timesteps(20)
        assert len(sch.timesteps) == 20 and int(sch.timesteps[0]) == 999


def test_named_configs_load_and_fit_their_sizes() -> None:
    from pathlib import Path

    from sonoshift.config import load_config
    from sonoshift.synth.config import SynthConfig

    root = Path(__file__).resolve().parents[1]
    for path, size in (("configs/cpu/synth.yaml", 64), ("configs/cpu/synth_patch4.yaml", 64),
                       ("configs/gpu/synth_128.yaml", 128), ("configs/gpu/synth_256.yaml", 256),
                       ("configs/cpu/synth_real.yaml", 64), ("configs/gpu/synth_real_128.yaml", 128)):
        cfg = load_config(SynthConfig, root / path, [])
        m = cfg.model
        assert cfg.data.size == size and len(m.attention) == len(m.block_out_channels)
        assert size % (m.patch * 2 ** (len(m.block_out_channels) - 1)) == 0
        assert all(c % m.norm_num_groups == 0 for c in m.block_out_channels)
    cfg = load_config(SynthConfig, root / "configs/cpu/synth.yaml", [])
    net = SynthUNet(cfg.model, channels=1, sample_size=64, n_planes=4, n_scanners=2)
    with torch.no_grad():
        y = net(torch.zeros(1, 1, 64, 64), torch.tensor([10]), torch.tensor([1]), torch.tensor([25.0]),
                torch.tensor([1]))
    assert y.shape == (1, 1, 64, 64)


class _Oracle(torch.nn.Module):
    """The exact denoiser of a one-image data distribution (every sample is ``c``), for eps or v prediction."""

    def __init__(self, c: torch.Tensor, alphas: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.c, self.a, self.prediction = c, alphas, prediction
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, plane, ga, scanner):
        a = self.a[t].view(-1, 1, 1, 1).float()
        eps = (x - a.sqrt() * self.c) / (1 - a).sqrt()
        return eps if self.prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * self.c


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_every_sampler_returns_the_data_under_an_exact_denoiser(prediction: str) -> None:
    from sonoshift.synth.config import SynthConfig
    from sonoshift.synth.dataset import Vocab
    from sonoshift.synth.pipeline import SynthPipeline

    cfg = SynthConfig(diffusion=SynthDiffusion(prediction=prediction))
    alphas = training_scheduler(cfg.diffusion).alphas_cumprod
    c = torch.linspace(-0.9, 0.9, 64).view(1, 1, 8, 8)
    pipe = SynthPipeline(_Oracle(c, alphas, prediction), cfg, Vocab(("a",), ("s",)), image_size=8)
    for sampler, steps in (("dpmpp", 20), ("ddim", 50), ("unipc", 20), ("ddpm", 50)):
        x = pipe(plane="a", n=2, generator=torch.Generator().manual_seed(0), sampler=sampler, steps=steps,
                 guidance=1.0)
        torch.testing.assert_close(x, c.expand(2, 1, 8, 8), atol=1e-4, rtol=0)


def test_min_snr_loss_weights_hand_values() -> None:
    from sonoshift.synth.schedulers import loss_weights

    ab = torch.tensor([0.5, 0.9, 0.1])          # SNR 1, 9, 1/9
    torch.testing.assert_close(loss_weights(ab, "epsilon", "min_snr", 5.0), torch.tensor([1.0, 5 / 9, 1.0]))
    torch.testing.assert_close(loss_weights(ab, "v_prediction", "min_snr", 5.0),
                               torch.tensor([0.5, 0.5, (1 / 9) / (10 / 9)]))
    torch.testing.assert_close(loss_weights(ab, "epsilon", "none"), torch.ones(3))
    # capped_v: x0 weight min(SNR + 1, 5) = 2, 5, 10/9; v MSE is x0 MSE * (SNR + 1), eps MSE is x0 MSE * SNR.
    torch.testing.assert_close(loss_weights(ab, "v_prediction", "capped_v", 5.0), torch.tensor([1.0, 0.5, 1.0]))
    torch.testing.assert_close(loss_weights(ab, "epsilon", "capped_v", 5.0), torch.tensor([2.0, 5 / 9, 10.0]))


def test_lr_warmup_then_cosine() -> None:
    from types import SimpleNamespace

    from sonoshift.synth.config import SynthConfig, SynthDiffusion
    from sonoshift.synth.method import Synth

    cfg = SynthConfig(diffusion=SynthDiffusion(lr_warmup_steps=10, lr_schedule="cosine"))
    fake = SimpleNamespace(cfg=cfg, ae=None)
    f = lambda step: Synth.lr_factors(fake, step, 100)["unet"]  # noqa: E731
    assert f(0) == pytest.approx(0.1 * 1.0)
    assert f(9) == pytest.approx(1.0 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    plain = SimpleNamespace(cfg=SynthConfig(), ae=None)
    assert Synth.lr_factors(plain, 5, 100) is None       # no warm-up, constant: the engine's own schedule
    # Latent variant: the denoiser's schedule starts after the 20 autoencoder steps (over the 80 left); the
    # autoencoder's LR follows a cosine over its own 20 steps.
    from sonoshift.synth.config import SynthLatent

    lat = SimpleNamespace(cfg=SynthConfig(diffusion=cfg.diffusion, latent=SynthLatent(enabled=True,
                                                                                      autoencoder_steps=20)), ae=1)
    assert Synth.lr_factors(lat, 20, 100)["unet"] == pytest.approx(0.1)
    assert Synth.lr_factors(lat, 60, 100)["unet"] == pytest.approx(0.5)
    assert Synth.lr_factors(lat, 0, 100)["autoencoder"] == pytest.approx(1.0)
    assert Synth.lr_factors(lat, 10, 100)["autoencoder"] == pytest.approx(0.5)


def test_plane_conditioning_is_strong_at_init() -> None:
    from sonoshift.synth.config import SynthModel

    m = SynthModel(block_out_channels=(8, 16), attention=(False, True), attention_head_dim=8, norm_num_groups=4,
                   patch=4, time_norm="scale_shift")
    torch.manual_seed(0)
    net = SynthUNet(m, channels=1, sample_size=16, n_planes=3, n_scanners=1).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([500, 500])
    with torch.no_grad():
        a = net(x, t, torch.tensor([1, 1]), torch.tensor([25.0, 25.0]), torch.tensor([0, 0]))
        b = net(x, t, torch.tensor([2, 2]), torch.tensor([25.0, 25.0]), torch.tensor([0, 0]))
    assert a.shape == x.shape
    # At initialisation already, the plane moves the output by a large fraction (~0.5; ~0.01 at std 0.02).
    assert float((a - b).abs().mean() / a.abs().mean()) > 0.1


def test_fourier_ga_features_hand_values() -> None:
    from sonoshift.synth.model import FourierGA

    f = FourierGA((16.0, 40.0), 2)
    out = f(torch.tensor([16.0, 28.0, 40.0]))
    # u = (ga - 16) / 24 -> 0, 0.5, 1; features [u, sin(pi u), sin(2 pi u), cos(pi u), cos(2 pi u)].
    expect = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0],
                           [0.5, 1.0, 0.0, 0.0, -1.0],
                           [1.0, 0.0, 0.0, -1.0, 1.0]])
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="ga_range"):
        FourierGA((30.0, 20.0), 2)


def test_condition_norm_gives_ga_the_plane_scale() -> None:
    def spread(**kw) -> tuple[float, float]:
        torch.manual_seed(0)
        emb = ConditionEmbedding(n_planes=2, n_scanners=1, dim=64, proj_dim=32, ga_scale=10.0, **kw)
        one = torch.ones(2, dtype=torch.int64)
        with torch.no_grad():
            by_ga = emb(one, torch.tensor([20.0, 36.0]), one)
            by_plane = emb(torch.tensor([1, 2]), torch.tensor([20.0, 20.0]), one)
        return float((by_ga[0] - by_ga[1]).norm()), float((by_plane[0] - by_plane[1]).norm())

    ga_old, plane_old = spread()
    assert ga_old < 0.3 * plane_old            # the untuned GA MLP is drowned by N(0, 1) plane rows
    ga_new, plane_new = spread(ga_embedding="fourier", condition_norm=True)
    assert 0.4 < ga_new / plane_new < 2.5      # 16 weeks apart move the embedding as much as a plane change
    torch.manual_seed(0)
    emb = ConditionEmbedding(n_planes=2, n_scanners=1, dim=64, proj_dim=32, ga_scale=10.0, ga_embedding="fourier",
                             condition_norm=True)
    z = torch.zeros(3, dtype=torch.int64)
    with torch.no_grad():
        e = emb(z, torch.tensor([20.0, math.nan, 30.0]), z)
        # Every known condition vector has RMS 1; the GA null token is used as it is.
        p0 = emb.plane.weight[0] / emb.plane.weight[0].pow(2).mean().sqrt()
        s0 = emb.scanner.weight[0] / emb.scanner.weight[0].pow(2).mean().sqrt()
        torch.testing.assert_close(e[1], p0 + s0 + emb.ga_null, atol=1e-4, rtol=0)
        ga_part = e[0] - p0 - s0
        assert abs(float(ga_part.pow(2).mean().sqrt()) - 1.0) < 1e-3
        # Smooth in GA: a quarter week moves the embedding far less than ten weeks.
        near = emb(z[:2], torch.tensor([24.0, 24.25]), z[:2])
        assert (near[0] - near[1]).norm() < 0.1 * (e[0] - e[2]).norm()


def test_per_condition_drop_rates() -> None:
    n = 20000
    plane, scanner = torch.ones(n, dtype=torch.int64), torch.full((n,), 2, dtype=torch.int64)
    ga = torch.full((n,), 25.0)
    g = torch.Generator().manual_seed(1)
    p, a, s = drop_conditions(plane, ga, scanner, 0.0, 0.1, g, drop_ga=0.5, drop_scanner=0.0)
    assert abs(float((p == 0).float().mean()) - 0.1) < 0.015
    assert abs(float(torch.isnan(a).float().mean()) - 0.5) < 0.015
    assert not bool((s == 0).any())


def test_ga_jitter_spreads_known_labels_only() -> None:
    ga = torch.cat([torch.full((20000,), 25.0), torch.full((10,), math.nan)])
    g = torch.Generator().manual_seed(3)
    out = jitter_ga(ga, 0.5, g)
    known = out[:20000]
    assert abs(float(known.mean()) - 25.0) < 0.02 and abs(float(known.std()) - 0.5) < 0.02
    assert bool(torch.isnan(out[20000:]).all())
    g0 = torch.Generator().manual_seed(3)
    state = g0.get_state()
    assert torch.equal(jitter_ga(ga[:5], 0.0, g0), ga[:5]) and torch.equal(g0.get_state(), state)
