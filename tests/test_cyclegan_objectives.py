"""CycleGAN losses and the fake pool against hand computations and torch's reference modules."""

from __future__ import annotations

import torch
from torch import nn

from sonoshift.objectives import (
    CycleGANLossWeights,
    ImagePool,
    discriminator_loss,
    generator_loss,
    lsgan,
)


def test_lsgan_equals_mse_against_constant_targets() -> None:
    p = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    mse = nn.MSELoss()
    torch.testing.assert_close(lsgan(p, True), mse(p, torch.ones_like(p)))
    torch.testing.assert_close(lsgan(p, False), mse(p, torch.zeros_like(p)))
    assert lsgan(torch.tensor([0.5, 1.5]), True).item() == 0.25  # ((-.5)^2 + .5^2) / 2


def test_generator_loss_weights_by_hand() -> None:
    z = torch.zeros(1, 1, 2, 2)
    one = torch.ones(1, 1, 2, 2)
    # D says 0 for both fakes -> GAN terms 1 each; reconstructions off by 1 and 0.5; identities off by 0.25.
    total, parts = generator_loss(
        d_fake_b=z, d_fake_a=z, real_a=z, real_b=z, rec_a=one, rec_b=0.5 * one, idt_a=0.25 * one,
        idt_b=-0.25 * one, weights=CycleGANLossWeights(),
    )
    assert parts["cycle_a"].item() == 1.0 and parts["cycle_b"].item() == 0.5
    assert total.item() == 1 + 1 + 10 * (1 + 0.5) + 5 * (0.25 + 0.25)
    total0, parts0 = generator_loss(
        d_fake_b=z, d_fake_a=z, real_a=z, real_b=z, rec_a=one, rec_b=0.5 * one, idt_a=None, idt_b=None,
        weights=CycleGANLossWeights(identity=0.0),
    )
    assert total0.item() == 2 + 15 and "idt_a" not in parts0


def test_discriminator_loss_is_halved() -> None:
    real, fake = torch.full((1, 1, 3, 3), 0.5), torch.full((1, 1, 3, 3), 0.5)
    assert discriminator_loss(real, fake, CycleGANLossWeights()).item() == 0.5 * (0.25 + 0.25)


def test_pool_fills_then_swaps_with_probability_half() -> None:
    pool = ImagePool(4, torch.Generator().manual_seed(0))
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # pool filling: fakes pass through
    returned_old = 0
    for k in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + k)
        out = pool.query(new)
        returned_old += int(out.item() != new.item())
        assert len(pool) == 4
    assert 70 < returned_old < 130  # about half of the queries return an older fake
    assert torch.equal(ImagePool(0, torch.Generator()).query(first), first)


def test_pool_state_roundtrip_continues_identically() -> None:
    g = torch.Generator().manual_seed(3)
    pool = ImagePool(3, g)
    stream = [torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    for x in stream[:4]:
        pool.query(x)
    tensors, state = pool.state("p")
    clone = ImagePool(3, torch.Generator().manual_seed(999))
    clone.load_state("p", tensors, state, torch.device("cpu"))
    for x in stream[4:]:
        assert torch.equal(pool.query(x), clone.query(x))
