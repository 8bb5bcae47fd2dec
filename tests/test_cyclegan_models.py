"""CycleGAN networks against the reference design: layer shapes, parameter counts, 30x30 map, 70x70 field."""

from __future__ import annotations

import torch
from torch import nn

from sonoshift.models import InstanceNorm, PatchGAN, ResnetGenerator, init_normal


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_resnet9_parameter_count_matches_reference_formula() -> None:
    ngf = 64
    expected = (
        conv(1, ngf, 7) + conv(ngf, 2 * ngf, 3) + conv(2 * ngf, 4 * ngf, 3)
        + 9 * 2 * conv(4 * ngf, 4 * ngf, 3)
        + conv(4 * ngf, 2 * ngf, 3) + conv(2 * ngf, ngf, 3)  # transposed convs: same weight count
        + conv(ngf, 1, 7)
    )
    g = ResnetGenerator(1, 1, ngf=64, n_blocks=9)
    assert n_params(g) == expected
    assert abs(n_params(g) / 1e6 - 11.37) < 0.005


def test_patchgan_parameter_count_matches_reference_formula() -> None:
    expected = conv(1, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 512, 4) + conv(512, 1, 4)
    d = PatchGAN(1, ndf=64, n_layers=3)
    assert n_params(d) == expected
    assert abs(n_params(d) / 1e6 - 2.76) < 0.005


def test_generator_layer_output_shapes() -> None:
    g = ResnetGenerator(1, 1, ngf=64, n_blocks=9)
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape)))
             for m in g.model if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    hooks += [m.register_forward_hook(lambda _m, _i, o: shapes.append(("block",) + tuple(o.shape)))
              for m in g.model if m.__class__.__name__ == "ResnetBlock"]
    with torch.no_grad():
        y = g(torch.zeros(1, 1, 32, 32))
    for h in hooks:
        h.remove()
    convs = [s for s in shapes if s[0] != "block"]
    assert convs == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 128, 16, 16), (1, 64, 32, 32),
                     (1, 1, 32, 32)]
    assert [s for s in shapes if s[0] == "block"] == [("block", 1, 256, 8, 8)] * 9
    assert y.shape == (1, 1, 32, 32) and y.abs().max() <= 1


def test_resize_upsampling_option_keeps_shape_and_has_no_transposed_conv() -> None:
    g = ResnetGenerator(1, 1, ngf=8, n_blocks=2, upsample="resize")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert any(isinstance(m, nn.Upsample) for m in g.modules())
    assert g(torch.rand(2, 1, 24, 40) * 2 - 1).shape == (2, 1, 24, 40)


def test_patchgan_gives_30x30_map_at_256() -> None:
    d = PatchGAN(1, ndf=8, n_layers=3)  # the map size depends on strides/kernels only, not on width
    with torch.no_grad():
        assert d(torch.zeros(1, 1, 256, 256)).shape == (1, 1, 30, 30)


def test_patchgan_receptive_field_is_70x70() -> None:
    d = PatchGAN(1, ndf=4, n_layers=3).double()
    init_normal(d, torch.Generator().manual_seed(0))
    # Instance norm pools statistics over the whole image; remove it to see the convolutional field.
    for i, m in enumerate(d.model):
        if isinstance(m, InstanceNorm):
            d.model[i] = nn.Identity()
    x = torch.rand(1, 1, 128, 128, dtype=torch.float64, requires_grad=True)
    out = d(x)
    out[0, 0, 7, 7].backward()  # an interior output
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_init_normal_draws_from_n0_002_and_is_seeded() -> None:
    g1 = init_normal(ResnetGenerator(1, 1, ngf=16, n_blocks=2), torch.Generator().manual_seed(3))
    g2 = init_normal(ResnetGenerator(1, 1, ngf=16, n_blocks=2), torch.Generator().manual_seed(3))
    ws = torch.cat([m.weight.flatten() for m in g1.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(ws.mean().item()) < 1e-3 and abs(ws.std().item() - 0.02) < 5e-4
    assert all(m.bias.abs().max() == 0 for m in g1.modules() if isinstance(m, nn.Conv2d))
    assert all(torch.equal(a, b) for a, b in zip(g1.state_dict().values(), g2.state_dict().values()))


def test_instance_norm_equals_torch_instance_norm_in_both_memory_formats() -> None:
    x = torch.randn(3, 8, 10, 12, generator=torch.Generator().manual_seed(0)) * 3 + 1
    ref = nn.InstanceNorm2d(8, affine=False, track_running_stats=False)(x)
    torch.testing.assert_close(InstanceNorm(8)(x), ref, rtol=1e-5, atol=1e-5)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(InstanceNorm(8)(xc), ref, rtol=1e-5, atol=1e-5)
    # numpy reference: per image and channel, biased variance
    a = x.numpy()
    mu, var = a.mean(axis=(2, 3), keepdims=True), a.var(axis=(2, 3), keepdims=True)
    torch.testing.assert_close(InstanceNorm(8)(x), torch.from_numpy((a - mu) / (var + 1e-5) ** 0.5), rtol=1e-4, atol=1e-5)
