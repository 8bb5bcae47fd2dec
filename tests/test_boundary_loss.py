"""Boundary-weighted Dice + cross-entropy and gamma augmentation of the segmenter training loop, against
independent references (SciPy morphology, MONAI's DiceCELoss, a NumPy cross-entropy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss
from scipy import ndimage

from sonoshift.downstream.boundary_loss import BoundaryDiceCELoss, boundary_band
from sonoshift.downstream.segmenter import SegmenterTrainConfig, augment


@pytest.mark.parametrize("width", [1, 2, 3])
def test_band_is_where_a_square_neighbourhood_holds_another_class(width):
    rng = np.random.default_rng(width)
    labels = np.zeros((3, 24, 20), np.int64)
    for lab in labels:  # a few blobs of classes 1 and 2
        for c in (1, 2):
            y0, x0 = rng.integers(0, 16, 2)
            lab[y0 : y0 + rng.integers(3, 9), x0 : x0 + rng.integers(3, 9)] = c
    band = boundary_band(torch.from_numpy(labels), width).numpy()
    size = (1, 2 * width + 1, 2 * width + 1)
    hi = ndimage.grey_dilation(labels, size=size, mode="nearest")
    lo = ndimage.grey_erosion(labels, size=size, mode="nearest")
    assert np.array_equal(band, hi != lo)
    assert band.any() and not band.all()


def test_zero_weight_is_monai_dice_ce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 16, 16, generator=g)
    labels = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).long()
    ref = DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)
    assert float(BoundaryDiceCELoss(0.0)(logits, labels)) == pytest.approx(float(ref), rel=1e-6)


def test_weighted_cross_entropy_counts_band_pixels_more():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 12, 12, generator=g)
    labels = torch.zeros(2, 1, 12, 12, dtype=torch.long)
    labels[:, :, 3:8, 4:9] = 1
    w, width = 3.0, 1
    lg = logits.numpy().astype(np.float64)
    y = labels[:, 0].numpy()
    logp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
    ce = -np.take_along_axis(logp, y[:, None], 1)[:, 0]
    box = np.zeros_like(y, bool)  # the band by hand: within one pixel of the 5x5 box's edge, inside or out
    box[:, 2:9, 3:10] = True
    box[:, 4:7, 5:8] = False
    ref = DiceLoss(to_onehot_y=True, softmax=True)(logits, labels).item() + (ce * (1 + w * box)).mean()
    assert BoundaryDiceCELoss(w, width)(logits, labels).item() == pytest.approx(ref, rel=1e-5)


def test_gamma_is_one_power_per_image_within_its_range():
    x = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8).repeat(32, 1, 1, 1)
    y = torch.zeros(32, 8, 8, dtype=torch.long)
    cfg = SegmenterTrainConfig(hflip=False, intensity_jitter=0.0, noise_std=0.0, gamma=0.5)
    xa, ya = augment(x, y, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(ya, y)
    u, v = ((x + 1) / 2).double(), ((xa + 1) / 2).double()
    assert torch.allclose(v[..., 0, 0], torch.zeros(1, dtype=v.dtype)) and torch.allclose(v[..., -1, -1], torch.ones(1, dtype=v.dtype))
    mid = (u > 0.05) & (u < 0.95)
    ex = (v.log() / u.log())[mid].reshape(32, -1)  # v = u ** e with one e per image
    assert torch.allclose(ex, ex[:, :1].expand_as(ex), rtol=1e-4)
    e = ex[:, 0]
    assert (e >= 1 / 1.5 - 1e-4).all() and (e <= 1.5 + 1e-4).all()
    assert (e < 0.9).any() and (e > 1.1).any()  # both darker and brighter draws
