"""DDGAN generator U-Net and time-conditioned discriminator: shapes, conditioning paths, building blocks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sonoshift.errors import SonoshiftError
from sonoshift.models.ddgan_disc import PAPER_DISC, DDGANDiscriminator, DiscConfig, minibatch_stddev
from sonoshift.models.ddgan_unet import (
    PAPER_UNET,
    AdaptiveGroupNorm,
    AttnBlock,
    DDGANUNet,
    PixelNorm,
    UNetConfig,
    sinusoidal_embedding,
)

TINY_G = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), nz=8, z_emb_dim=16, t_emb_dim=16)
TINY_D = DiscConfig(ch=8, ch_mult=(1, 2), t_emb_dim=16, mbstd_group=2)


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_sinusoidal_embedding_hand_values():
    e = sinusoidal_embedding(torch.tensor([0, 3]), 4)
    # dim 4 -> frequencies 1 and 1e-2 (10000^(-1/2)); [sin, sin, cos, cos]
    ref = [[0, 0, 1, 1], [math.sin(3), math.sin(0.03), math.cos(3), math.cos(0.03)]]
    np.testing.assert_allclose(e.numpy(), ref, atol=1e-6)
    assert sinusoidal_embedding(torch.tensor([1]), 5).shape == (1, 5)


def test_pixel_norm_and_adaptive_group_norm():
    z = torch.randn(3, 10, generator=torch.Generator().manual_seed(0)) * 5
    out = PixelNorm()(z)
    np.testing.assert_allclose(out.pow(2).mean(dim=1).numpy(), np.ones(3), rtol=1e-5)
    ada = AdaptiveGroupNorm(8, style_dim=4)
    torch.nn.init.zeros_(ada.style.weight)
    with torch.no_grad():
        ada.style.bias.copy_(torch.cat([torch.full((8,), 1.0), torch.full((8,), 0.5)]))  # gamma = 1, beta = .5
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(1))
    ref = 2.0 * F.group_norm(x, ada.norm.num_groups) + 0.5
    torch.testing.assert_close(ada(x, torch.randn(2, 4)), ref)


def test_generator_shapes_range_and_conditioning():
    torch.manual_seed(0)
    # Random (not zero) init of the output layers, so that every input path reaches the output.
    G = DDGANUNet(dataclasses.replace(TINY_G, zero_init=False), image_size=16)
    assert sum(isinstance(m, AttnBlock) for m in G.modules()) == 1 + 2 + 1  # mid + down@8 + up@8 (x2 blocks)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 16, 16, generator=g)
    t = torch.tensor([0, 1])
    z = torch.randn(2, 8, generator=g)
    y = G(x, t, z)
    assert y.shape == (2, 1, 16, 16)
    assert float(y.detach().abs().max()) <= 1.0
    # every input path changes the output: latent, time, condition channel
    assert not torch.allclose(G(x, t, torch.randn(2, 8, generator=g)), y)
    assert not torch.allclose(G(x, torch.tensor([2, 3]), z), y)
    x2 = x.clone()
    x2[:, 1] = 0.0
    assert not torch.allclose(G(x2, t, z), y)
    # batch items are independent (no batch statistics in the generator)
    torch.testing.assert_close(G(x[:1], t[:1], z[:1]), y[:1], rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert all(p.grad is not None for p in G.parameters())
    with pytest.raises(SonoshiftError, match="divisible"):
        G(torch.zeros(1, 2, 9, 9), t[:1], z[:1])
    with pytest.raises(SonoshiftError):
        G(torch.zeros(1, 1, 16, 16), t[:1], z[:1])


def test_paper_scale_variants_build():
    G = DDGANUNet(PAPER_UNET, image_size=256)
    D = DDGANDiscriminator(PAPER_DISC)
    assert 20e6 < _n_params(G) < 80e6
    assert 5e6 < _n_params(D) < 60e6
    assert sum(isinstance(m, AttnBlock) for m in G.modules()) == 1 + 2 + 3  # mid + down@16 + up@16
    assert _n_params(DDGANUNet(UNetConfig(), image_size=64)) < 2e6  # the CPU variant stays compact


def test_minibatch_stddev_matches_numpy():
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    out = minibatch_stddev(x, group=2)
    assert out.shape == (4, 4, 2, 2)
    xs = x.numpy()
    for m in range(2):  # groups are samples {m, m + 2}
        ref = np.sqrt(np.var(xs[[m, m + 2]], axis=0) + 1e-8).mean()
        for b in (m, m + 2):
            np.testing.assert_allclose(out[b, 3].numpy(), np.full((2, 2), ref), rtol=1e-5)
    torch.testing.assert_close(out[:, :3], x)
    assert float(minibatch_stddev(x[:1], group=4)[:, 3].abs().max()) == 0.0
    assert minibatch_stddev(x[:3], group=2).shape == (3, 4, 2, 2)  # 3 is not divisible by 2 -> groups of 1


def test_discriminator_shapes_and_time_conditioning():
    torch.manual_seed(0)
    D = DDGANDiscriminator(TINY_D)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 1, 16, 16, generator=g), torch.randn(4, 1, 16, 16, generator=g)
    t = torch.tensor([0, 1, 2, 3])
    out = D(a, b, t)
    assert out.shape == (4,)
    assert not torch.allclose(D(a, b, torch.zeros(4, dtype=torch.long)), out)
    assert not torch.allclose(D(b, a, t), out)  # the pair is ordered: (x_t, x_{t+1})
    with pytest.raises(SonoshiftError, match="divisible"):
        D(a[..., :6, :6], b[..., :6, :6], t)
    Dc = DDGANDiscriminator(DiscConfig(ch=8, ch_mult=(1, 2), t_emb_dim=16, see_condition=True))
    assert Dc(a, b, t, cond=a).shape == (4,)
    with pytest.raises(SonoshiftError, match="condition"):
        Dc(a, b, t)
