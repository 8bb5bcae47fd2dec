"""DDGAN losses on hand-made logits, R1 against analytic gradients, detachment, and losses that go down."""

from __future__ import annotations

import math

import pytest
import torch

from sonoshift.models.ddgan_disc import DDGANDiscriminator, DiscConfig
from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig
from sonoshift.objectives.ddgan import (
    d_logistic_loss,
    discriminator_loss,
    g_nonsaturating_loss,
    generator_loss,
    r1_penalty,
)
from sonoshift.diffusion import ScheduleConfig, schedule_from_config

TINY_G = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), nz=4, z_emb_dim=8, t_emb_dim=8)
TINY_D = DiscConfig(ch=8, ch_mult=(1, 2), t_emb_dim=8, mbstd_group=2)


def _sp(v: float) -> float:
    return math.log1p(math.exp(v))


def test_logistic_losses_on_hand_logits():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 3.0])
    ref = (_sp(-0.0) + _sp(-2.0)) / 2 + (_sp(-1.0) + _sp(3.0)) / 2
    assert d_logistic_loss(real, fake).item() == pytest.approx(ref, rel=1e-6)
    # = -log sigmoid(real) - log(1 - sigmoid(fake))
    sig = torch.sigmoid
    alt = (-torch.log(sig(real))).mean() - torch.log(1 - sig(fake)).mean()
    assert d_logistic_loss(real, fake).item() == pytest.approx(alt.item(), rel=1e-6)
    assert g_nonsaturating_loss(torch.tensor([0.0, -2.0])).item() == pytest.approx((math.log(2) + _sp(2.0)) / 2)
    # a confident discriminator drives its loss to 0; a fooled one makes the generator's loss small
    assert d_logistic_loss(torch.tensor([30.0]), torch.tensor([-30.0])).item() < 1e-10
    assert g_nonsaturating_loss(torch.tensor([30.0])).item() < 1e-10


def test_r1_penalty_analytic_gradients():
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    w = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    # linear D(x) = <w, x>: grad = w for every sample -> gamma / 2 * ||w||^2
    pen = r1_penalty((x * w).sum(dim=(1, 2, 3)), x, gamma=0.3)
    assert pen.item() == pytest.approx(0.15 * w.pow(2).sum().item(), rel=1e-6)
    # quadratic D(x) = sum x^2: grad = 2x -> gamma / 2 * mean_b sum 4 x^2
    pen = r1_penalty(x.pow(2).sum(dim=(1, 2, 3)), x, gamma=1.0)
    assert pen.item() == pytest.approx(0.5 * 4 * x.detach().pow(2).sum().item() / 3, rel=1e-6)
    pen.backward()  # the graph is kept: the penalty itself is differentiable (d/dx = 4 x / 3)
    torch.testing.assert_close(x.grad, 4 * x.detach() / 3)


def _setup():
    torch.manual_seed(0)
    G, D = DDGANUNet(TINY_G, image_size=8), DDGANDiscriminator(TINY_D)
    s = schedule_from_config(ScheduleConfig(num_steps=2))
    x0 = torch.full((4, 1, 8, 8), 0.9)
    x0[..., ::2, :] = -0.9  # stripes: a target an untrained generator does not produce
    cond = -x0
    return G, D, s, x0, cond


def test_generator_output_is_detached_in_discriminator_step():
    G, D, s, x0, cond = _setup()
    loss, logs = discriminator_loss(G, D, s, x0, cond, torch.Generator().manual_seed(1), r1_gamma=0.05)
    assert set(logs) == {"loss_D_real", "loss_D_fake", "r1"} and logs["r1"] > 0
    assert loss.item() == pytest.approx(logs["loss_D_real"] + logs["loss_D_fake"] + logs["r1"], rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in G.parameters())
    assert all(p.grad is not None for p in D.parameters())
    # the generator step reaches the generator
    D.zero_grad(set_to_none=True)
    gl, parts = generator_loss(G, D, s, x0, cond, torch.Generator().manual_seed(2))
    gl.backward()
    assert all(p.grad is not None for p in G.parameters())
    assert parts["x_t_fake"].shape == x0.shape and parts["t"].max() < s.num_steps
    # same generator seed -> same losses
    a, _ = discriminator_loss(G, D, s, x0, cond, torch.Generator().manual_seed(7))
    b, _ = discriminator_loss(G, D, s, x0, cond, torch.Generator().manual_seed(7))
    assert a.item() == b.item()


def test_losses_decrease_when_each_player_trains():
    G, D, s, x0, cond = _setup()
    g = torch.Generator().manual_seed(3)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.9))
    for _ in range(40):
        loss, _ = discriminator_loss(G, D, s, x0, cond, g, r1_gamma=0.01)
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    eval_g = torch.Generator().manual_seed(100)
    d_after = sum(discriminator_loss(G, D, s, x0, cond, eval_g)[0].item() for _ in range(8)) / 8
    assert d_after < 0.7 * math.log(4)  # chance level is 2 log 2: D learns to tell untrained fakes from real

    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.9))
    eval_g = torch.Generator().manual_seed(200)
    g_before = sum(generator_loss(G, D, s, x0, cond, eval_g)[0].item() for _ in range(8)) / 8
    for p in D.parameters():
        p.requires_grad_(False)
    for _ in range(30):
        loss, _ = generator_loss(G, D, s, x0, cond, g)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
    eval_g = torch.Generator().manual_seed(200)
    g_after = sum(generator_loss(G, D, s, x0, cond, eval_g)[0].item() for _ in range(8)) / 8
    assert g_after < 0.7 * g_before  # the generator learns to fool a fixed discriminator
