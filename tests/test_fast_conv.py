"""models/fast_conv.py + models/winograd.py: the Winograd 3x3 convolution equals F.conv2d (values and all
gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sonoshift.models import fast_conv
from sonoshift.models.fast_conv import Conv3x3
from sonoshift.models.resnet_generator import ResnetGenerator

@pytest.fixture
def small_threshold(monkeypatch):
    """Let the fast path run on test-sized maps (the production thresholds are for 256x256 images)."""
    monkeypatch.setattr(fast_conv, "MIN_PIXELS", 1)
    monkeypatch.setattr(fast_conv, "MIN_CHANNELS", 1)


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_conv2d_values_and_gradients(small_threshold, padding, bias):
    g = torch.Generator().manual_seed(0)
    conv = Conv3x3(6, 5, padding=padding, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
        if bias:
            conv.bias.copy_(torch.randn(5, generator=g))
    x = torch.randn(3, 6, 13, 11, generator=g, requires_grad=True)
    assert conv.uses_fast_path(x)
    y = conv(x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=padding)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    go = torch.randn(ref.shape, generator=g)
    params = [x, conv.weight] + ([conv.bias] if bias else [])
    got = torch.autograd.grad(y, params, go)
    want = torch.autograd.grad(ref, params, go)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_deterministic_and_input_without_grad(small_threshold):
    conv = Conv3x3(4, 4)
    x = torch.randn(2, 4, 10, 10, generator=torch.Generator().manual_seed(1))
    y1, y2 = conv(x), conv(x)
    assert torch.equal(y1, y2)
    y1.sum().backward()  # x needs no gradient: only weight and bias gradients are computed
    assert conv.weight.grad is not None and conv.bias.grad is not None


def test_fast_path_only_where_it_pays():
    conv = Conv3x3(256, 256)
    big = torch.zeros(1, 256, 34, 34)
    assert conv.uses_fast_path(big)  # the generator's residual convs (ngf 64) at 128x128 and up
    assert not conv.uses_fast_path(torch.zeros(1, 256, 10, 10))  # 8x8 maps: below the size where it pays
    assert not Conv3x3(128, 128).uses_fast_path(torch.zeros(1, 128, 34, 34))  # too thin
    assert not Conv3x3(256, 256, fast=False).uses_fast_path(big)
    assert not conv.uses_fast_path(big.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not conv.uses_fast_path(big)
    small = torch.randn(1, 256, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(conv(small), F.conv2d(small, conv.weight, conv.bias))


def test_generator_same_function_and_state_dict_with_and_without_fast_conv(small_threshold):
    g_fast = ResnetGenerator(1, 1, ngf=8, n_blocks=2, upsample="resize", fast_conv=True)
    g_plain = ResnetGenerator(1, 1, ngf=8, n_blocks=2, upsample="resize", fast_conv=False)
    assert g_fast.state_dict().keys() == g_plain.state_dict().keys()
    g_plain.load_state_dict(g_fast.state_dict())
    x = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(2)) * 2 - 1
    y_fast, y_plain = g_fast(x), g_plain(x)
    torch.testing.assert_close(y_fast, y_plain, rtol=1e-4, atol=1e-5)
    y_fast.square().mean().backward()
    y_plain.square().mean().backward()
    for (name, p), q in zip(g_fast.named_parameters(), g_plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-6, msg=name)


@pytest.mark.parametrize("shape", [(1, 3, 6, 6), (2, 4, 9, 14), (3, 2, 3, 3), (1, 5, 34, 30)])
def test_winograd_functions_exact_in_float64(shape):
    """In float64 the transforms are exact to rounding: the three functions equal conv2d and its gradients."""
    from sonoshift.models.winograd import conv3x3_valid, conv3x3_valid_input_grad, conv3x3_valid_weight_grad

    g = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, shape[1], 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    ref = F.conv2d(x, w, b)
    torch.testing.assert_close(conv3x3_valid(x, w, b), ref, rtol=1e-10, atol=1e-10)
    go = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad(ref, (x, w), go)
    torch.testing.assert_close(conv3x3_valid_input_grad(go, w), gx, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(conv3x3_valid_weight_grad(x, go), gw, rtol=1e-10, atol=1e-10)
