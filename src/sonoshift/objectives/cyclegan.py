"""CycleGAN losses (Zhu et al. 2017, reference design): LSGAN, cycle L1 both ways, identity L1, halved D loss.

Pure functions of tensors; the training step that calls them lives in ``sonoshift.methods.cyclegan``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CycleGANLossWeights:
    """Loss weights: cycle L1 (both directions) 10, identity L1 0.5 x cycle = 5, D loss x 0.5."""

    cycle: float = 10.0
    identity: float = 5.0
    discriminator: float = 0.5


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean (pred - 1)^2 for real targets, mean pred^2 for fake; a scalar.

    Computed without materialising a target tensor (same value as ``MSELoss(pred, ones/zeros)``).
    """
    return (pred - 1.0).square().mean() if real else pred.square().mean()


def generator_loss(
    *,
    d_fake_b: torch.Tensor,
    d_fake_a: torch.Tensor,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    rec_a: torch.Tensor,
    rec_b: torch.Tensor,
    idt_a: torch.Tensor | None,
    idt_b: torch.Tensor | None,
    weights: CycleGANLossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total generator loss and its parts (detached).

    ``d_fake_b`` = D_b(G_ab(a)), ``d_fake_a`` = D_a(G_ba(b)); ``rec_a`` = G_ba(G_ab(a)), ``rec_b`` = G_ab(G_ba(b));
    ``idt_a`` = G_ab(b) (should equal b), ``idt_b`` = G_ba(a) (should equal a); None when identity weight is 0.
    """
    gan_ab = lsgan(d_fake_b, True)
    gan_ba = lsgan(d_fake_a, True)
    cyc_a = (rec_a - real_a).abs().mean()
    cyc_b = (rec_b - real_b).abs().mean()
    total = gan_ab + gan_ba + weights.cycle * (cyc_a + cyc_b)
    parts = {"G_gan_ab": gan_ab, "G_gan_ba": gan_ba, "cycle_a": cyc_a, "cycle_b": cyc_b}
    if idt_a is not None and idt_b is not None and weights.identity > 0:
        id_a = (idt_a - real_b).abs().mean()
        id_b = (idt_b - real_a).abs().mean()
        total = total + weights.identity * (id_a + id_b)
        parts.update(idt_a=id_a, idt_b=id_b)
    return total, {k: v.detach() for k, v in parts.items()}


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, weights: CycleGANLossWeights) -> torch.Tensor:
    """Discriminator loss weights.discriminator x (LSGAN(real, 1) + LSGAN(fake, 0)); a scalar."""
    return weights.discriminator * (lsgan(d_real, True) + lsgan(d_fake, False))
