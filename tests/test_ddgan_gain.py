"""The multiplicative ("gain") correction of the anchored DDGAN generator (issue 12): untrained it returns its
condition; trained weights give x_0 + 1 = (condition + 1) exp(low-passed correction), the same correction the
additive generator adds; black stays black."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor import apply_as_gain
from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig

GAIN = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), nz=4, z_emb_dim=8, t_emb_dim=8,
                  output="gain", correction_sigma=1.5)


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 2, 16, 16, generator=g) * 2 - 1
    x[:, 1, :3] = -1.0  # black rows outside the fan
    return x, torch.tensor([0, 2]), torch.randn(2, 4, generator=g)


def test_untrained_gain_generator_returns_its_condition_exactly():
    torch.manual_seed(0)
    G = DDGANUNet(GAIN, image_size=16)
    x, t, z = _inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(G(x, t, z), x[:, 1:2], rtol=0, atol=0)


def test_gain_output_multiplies_the_condition_by_the_exponential_of_the_smoothed_correction():
    raw = dataclasses.replace(GAIN, zero_init=False, correction_sigma=0.0, output="residual")
    torch.manual_seed(3)
    additive = DDGANUNet(raw, image_size=16)
    gain = DDGANUNet(dataclasses.replace(raw, output="gain", correction_sigma=1.5), image_size=16)
    gain.load_state_dict(additive.state_dict())  # same weights: only the output map differs
    x, t, z = _inputs(4)
    with torch.no_grad():
        d = (additive(x, t, z) - x[:, 1:2]).double().numpy()[:, 0]
        got = gain(x, t, z).double().numpy()[:, 0]
    assert np.abs(d).max() > 1e-3  # a non-trivial correction
    smooth = np.stack([gaussian_filter(c, 1.5, mode="nearest", truncate=3.0) for c in d])
    expect = (x[:, 1].double().numpy() + 1.0) * np.exp(smooth) - 1.0
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5)
    # black (-1) condition pixels stay black whatever the correction: a gain cannot draw on the background
    np.testing.assert_allclose(got[:, :3], -1.0, rtol=0, atol=1e-6)


def test_gain_output_needs_a_condition_channel():
    with pytest.raises(SonoshiftError, match="condition"):
        DDGANUNet(dataclasses.replace(GAIN, in_channels=1), image_size=16)


def test_apply_as_gain_equals_a_normalized_convolution_reference():
    g = np.random.default_rng(0)
    base = g.uniform(0, 255, (2, 20, 24))
    base[:, :4] = 0  # outside the fan
    y = np.clip(base * g.uniform(0.5, 1.2, base.shape), 0, 255)
    fg = base >= 0.5

    def blur(v):  # scipy: radius int(3 * 2 + 0.5) = 6 = ceil(3 sigma), zero padding
        return gaussian_filter(v * fg[i], 2.0, mode="constant", truncate=3.0) / np.maximum(
            gaussian_filter(fg[i].astype(float), 2.0, mode="constant", truncate=3.0), 1e-6)

    expect = np.zeros_like(base)
    for i in range(len(base)):
        gain = np.clip(blur(y[i]) / np.maximum(blur(base[i]), 1.0), 0, 4)
        expect[i] = np.where(fg[i], np.clip(base[i] * gain, 0, 255), 0)
    to = lambda a: torch.from_numpy(a / 127.5 - 1.0).float()[:, None]  # noqa: E731
    got = (apply_as_gain(to(y), to(base), 2.0)[:, 0].double().numpy() + 1) * 127.5
    np.testing.assert_allclose(got, expect, rtol=0, atol=2e-3)
    # the base's own brightness re-applied to it is the identity (where its local mean is not clamped at 1)
    bright = np.where(fg, np.maximum(base, 20.0), 0.0)
    torch.testing.assert_close(apply_as_gain(to(bright), to(bright), 2.0), to(bright), rtol=0, atol=1e-4)
