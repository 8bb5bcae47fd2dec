"""The anchored DDGAN design (issue 12): an untrained translator returns its input, the reference's zero init and
group norm, SynDiff's L1 term, EMA warm-up, a learning rate that holds until mid-run, degraded round trips."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from sonoshift.engine.ema import EMA, warmup_decay
from sonoshift.methods.cascade import Cascade, CascadeConfig, CascadeTranslator
from sonoshift.methods.cyclegan import CycleGANConfig, CycleGANModel, build_generator
from sonoshift.methods.ddgan import DDGAN, DDGANConfig, DDGANOptim, DDGANTranslator, FrozenCycleGAN
from sonoshift.models.ddgan_unet import DDGANUNet, ResBlock, UNetConfig, group_count
from sonoshift.objectives.ddgan import generator_loss
from sonoshift.diffusion import ScheduleConfig, schedule_from_config

RES_G = UNetConfig(
    ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), nz=4, z_emb_dim=8, t_emb_dim=8, output="residual"
)


def _images(seed: int, n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_untrained_residual_generator_returns_its_condition_for_any_noise_step_and_latent():
    torch.manual_seed(0)
    G = DDGANUNet(RES_G, image_size=16)
    cond = _images(1)
    for seed in range(3):
        g = torch.Generator().manual_seed(10 + seed)
        x_next = torch.randn(3, 1, 16, 16, generator=g)
        t = torch.randint(0, 4, (3,), generator=g)
        out = G(torch.cat([x_next, cond], dim=1), t, torch.randn(3, 4, generator=g))
        torch.testing.assert_close(out, cond, rtol=0, atol=0)
    # the tanh parametrization with the same zero init predicts mid-grey instead: it ignores its input
    tanh = DDGANUNet(dataclasses.replace(RES_G, output="tanh"), image_size=16)
    assert tanh(torch.cat([cond, cond], dim=1), t, torch.randn(3, 4)).abs().max() == 0


@pytest.mark.parametrize("start", ["noise", "partial"])
@pytest.mark.parametrize("steps", [4, 6])
def test_untrained_ddgan_translator_returns_the_source_frame(start, steps):
    torch.manual_seed(1)
    G = DDGANUNet(RES_G, image_size=16)
    t_max = 0.25 if start == "partial" else 1.0
    s = schedule_from_config(ScheduleConfig(num_steps=steps, start=start, t_max=t_max))
    tr = DDGANTranslator(G, s, start, (16, 16), "handheld", "cart")
    x = _images(2)
    y = tr(x, generator=torch.Generator().manual_seed(0))
    # the last posterior step has variance ~1e-8: the output is the source frame to float tolerance
    torch.testing.assert_close(y, x, rtol=0, atol=1e-5)
    mean, std = tr.uncertainty(x, 3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(mean, x, rtol=0, atol=1e-5)
    assert float(std.max()) < 1e-5


def test_untrained_cascade_translator_returns_the_cyclegan_output():
    torch.manual_seed(2)
    G = DDGANUNet(RES_G, image_size=16)
    cyclegan = build_generator(CycleGANModel(ngf=4, n_blocks=1))
    for p in cyclegan.parameters():  # a CycleGAN that visibly changes its input
        nn.init.normal_(p, 0.0, 0.2)
    s = schedule_from_config(ScheduleConfig(num_steps=4))
    tr = CascadeTranslator(G, s, "noise", (16, 16), "handheld", "cart", pre=cyclegan)
    x = _images(3)
    with torch.no_grad():
        translated = cyclegan(x)
    assert (translated - x).abs().mean() > 0.05
    torch.testing.assert_close(tr(x, generator=torch.Generator().manual_seed(0)), translated, rtol=0, atol=1e-5)


def test_reference_zero_init_makes_every_residual_block_its_skip_path():
    torch.manual_seed(3)
    G = DDGANUNet(RES_G, image_size=16)
    assert G.head.weight.abs().sum() == 0 and G.head.bias.abs().sum() == 0
    blocks = [m for m in G.modules() if isinstance(m, ResBlock)]
    assert len(blocks) == 1 * 2 + 2 + 2 * 2  # down, middle, up
    x = torch.randn(2, 8, 8, 8)
    block = ResBlock(8, 16, 8, 8, 0.0)
    with torch.no_grad():
        expect = block.skip(x) / math.sqrt(2.0)
        torch.testing.assert_close(block(x, torch.randn(2, 8), torch.randn(2, 8)), expect)
    # without zero init the block's residual branch is not zero
    off = ResBlock(8, 16, 8, 8, 0.0, zero_init=False)
    with torch.no_grad():
        assert not torch.allclose(off(x, torch.randn(2, 8), torch.randn(2, 8)), off.skip(x) / math.sqrt(2.0))


def test_group_counts_follow_the_reference_min_ch_over_4_and_32():
    # reference: num_groups = min(ch // 4, 32)
    assert [group_count(c) for c in (4, 8, 16, 32, 64, 128, 256, 512)] == [1, 2, 4, 8, 16, 32, 32, 32]
    assert group_count(12) == 3 and group_count(2) == 1
    assert [group_count(c, "max") for c in (8, 16, 32, 64)] == [8, 16, 32, 32]  # former: instance norm <= 32
    G = DDGANUNet(RES_G, image_size=16)
    assert G.head_norm.num_groups == 2  # 8 channels -> 2 groups of 4


def test_syndiff_l1_term_is_added_with_its_weight():
    class Const(nn.Module):
        """Predicts x_0 = 0.25 everywhere (through the generator interface)."""

        cfg = UNetConfig(nz=2)

        def forward(self, x, t, z):
            return torch.full_like(x[:, :1], 0.25)

    class ZeroD(nn.Module):
        cfg = type("C", (), {"see_condition": False})()

        def forward(self, x_t, x_next, t, cond=None):
            return torch.zeros(x_t.shape[0])

    s = schedule_from_config(ScheduleConfig(num_steps=4))
    x0 = torch.tensor([-1.0, 0.0, 0.5, 1.0]).view(1, 1, 2, 2).expand(2, 1, 2, 2).contiguous()
    loss, p = generator_loss(Const(), ZeroD(), s, x0, x0, torch.Generator().manual_seed(0), l1_weight=0.5)
    l1 = (1.25 + 0.25 + 0.25 + 0.75) / 4  # mean |0.25 - x0|
    assert float(p["l1"]) == pytest.approx(l1)
    assert float(loss) == pytest.approx(math.log(2.0) + 0.5 * l1)  # softplus(-0) = log 2
    loss0, _ = generator_loss(Const(), ZeroD(), s, x0, x0, torch.Generator().manual_seed(0))
    assert float(loss0) == pytest.approx(math.log(2.0))


def test_ema_warmup_matches_a_hand_computation():
    w = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        w.weight.fill_(0.0)
    ema = EMA(w, 0.5, warmup=True)
    online = [1.0, 2.0, 4.0, 8.0]
    expect, avg = [], 0.0
    # decays by hand: min(0.5, 1/10), min(0.5, 2/11), min(0.5, 3/12), min(0.5, 4/13)... then 0.5 once (1+n)/(10+n) >= .5
    for n, v in enumerate(online):
        d = min(0.5, (1 + n) / (10 + n))
        avg = d * avg + (1 - d) * v
        expect.append(avg)
    got = []
    for v in online:
        with torch.no_grad():
            w.weight.fill_(v)
        ema.update(w)
        got.append(float(ema.module.weight))
    assert got == pytest.approx(expect, rel=1e-6)
    assert got[0] == pytest.approx(0.9)  # the first update keeps only 10% of the init
    assert warmup_decay(0.995, 8) == pytest.approx(0.5) and warmup_decay(0.995, 10_000) == 0.995
    with torch.no_grad():
        w.weight.fill_(0.0)
    plain = EMA(w, 0.5)
    with torch.no_grad():
        w.weight.fill_(8.0)
    plain.update(w)
    assert float(plain.module.weight) == pytest.approx(4.0)  # no warm-up: 0.5 * 0 + 0.5 * 8 (warm-up: 7.2)
    assert plain.num_updates == 1 and ema.num_updates == 4


def _stub_cyclegan() -> FrozenCycleGAN:
    meta = {"source_domain": "handheld", "target_domain": "cart"}
    return FrozenCycleGAN(nn.Identity(), nn.Identity(), CycleGANConfig(), meta, "stub")


def _tiny_cfg(cls, **kw):
    gen = dataclasses.replace(RES_G, attn_resolutions=())
    return cls(generator=gen, **kw)


def test_learning_rate_holds_until_decay_start_then_cosine():
    cfg = _tiny_cfg(DDGANConfig, optim=DDGANOptim(lr_min_ratio=0.05, decay_start=0.5))
    m = DDGAN(cfg, torch.device("cpu"), (16, 16), _stub_cyclegan())
    f = [m.lr_factors(s, 400)["G"] for s in (0, 100, 200, 300, 400)]
    # full rate until step 200, then cosine from 1 to 0.05 over the second half: at 300, halfway -> 0.525
    assert f == pytest.approx([1.0, 1.0, 1.0, 0.05 + 0.95 * 0.5, 0.05])
    old = DDGAN(_tiny_cfg(DDGANConfig, optim=DDGANOptim(lr_min_ratio=0.05)), torch.device("cpu"), (16, 16),
                _stub_cyclegan())
    assert old.lr_factors(200, 400)["G"] == pytest.approx(0.525)  # the former schedule: about half by mid-run


def test_degraded_round_trip_adds_noise_to_the_synthetic_source():
    sigma = 0.1
    cfg = _tiny_cfg(CascadeConfig, round_trip_noise=sigma)
    m = Cascade(cfg, torch.device("cpu"), (16, 16), _stub_cyclegan())
    x0 = torch.zeros(4, 1, 32, 32)
    cond = m.condition(x0, torch.Generator().manual_seed(0))
    # identity CycleGAN: the condition is x0 + N(0, sigma^2) (no clamping at 0 +- 5 sigma)
    assert float(cond.std()) == pytest.approx(sigma, rel=0.05) and abs(float(cond.mean())) < 0.01
    plain = Cascade(_tiny_cfg(CascadeConfig), torch.device("cpu"), (16, 16), _stub_cyclegan())
    torch.testing.assert_close(plain.condition(x0), x0, rtol=0, atol=0)
    # the plain DDGAN's condition (the synthetic source itself) with condition_noise
    dd = DDGAN(_tiny_cfg(DDGANConfig, condition_noise=sigma), torch.device("cpu"), (16, 16), _stub_cyclegan())
    cond = dd.condition(x0, torch.Generator().manual_seed(1))
    assert float(cond.std()) == pytest.approx(sigma, rel=0.05)
    clean = DDGAN(_tiny_cfg(DDGANConfig), torch.device("cpu"), (16, 16), _stub_cyclegan())
    torch.testing.assert_close(clean.condition(x0), x0, rtol=0, atol=0)
