"""Heads cut by the image border: the cut geometry against hand-placed discs, the seeded draw, the crop refiner's
and the polar refiner's training data from cut copies, the polar stage's dropped rays, the amodal canvases and the
config bounds."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from sonoshift.config import ConfigValueError, load_config
from sonoshift.downstream.hc18 import Hc18Config
from sonoshift.judges.ga.border_cut import (
    amodal_canvas, canvas_padding, crop_to_cut, cut_copies, cut_line, pad_canvas, training_cuts, zero_cut,
)
from sonoshift.judges.ga.head_crop import training_crops
from sonoshift.judges.ga.polar import PolarGrid, exit_rows, ray_hits
from sonoshift.judges.ga.polar_refiner import drop_at_exit, training_batch

# a disc of radius 30 centred at (x 70, y 50) in a 100 x 160 frame: its mask spans x 40..100 and y 20..80
H, W, CX, CY, R = 100, 160, 70, 50, 30


def disc() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    cv2.circle(m, (CX, CY), R, 1, -1)
    return m


@pytest.mark.parametrize("side, cut, kept_shape", [
    (0, 0.25, (H, W - 55)),   # x from 40 + 0.25 * 60 = 55 on
    (1, 0.25, (H, 85 + 1)),   # x up to 100 - 15 = 85
    (2, 0.5, (H - 50, W)),    # y from 20 + 30 = 50 on
    (3, 0.1, (74 + 1, W)),    # y up to 80 - 6 = 74
])
def test_cut_removes_the_share_of_the_head_extent(side, cut, kept_shape):
    m = disc()
    assert crop_to_cut(m, m, cut, side).shape == kept_shape
    # the cut head keeps (1 - cut) of its extent across the border, to a pixel
    kept = crop_to_cut(m, m, cut, side)
    ys, xs = np.nonzero(kept)
    extent = (xs.max() - xs.min() + 1) if side < 2 else (ys.max() - ys.min() + 1)
    assert extent == pytest.approx((1 - cut) * (2 * R + 1), abs=1.0)
    # zero_cut blacks out exactly the pixels crop_to_cut removes
    z = zero_cut(np.ones((H, W), np.uint8), m, cut, side)
    assert z.shape == (H, W) and int(z.sum()) == kept_shape[0] * kept_shape[1]
    assert int(zero_cut(m, m, cut, side).sum()) == int(kept.sum())


def test_cut_line_refuses_an_empty_mask():
    with pytest.raises(ValueError, match="no head"):
        cut_line(np.zeros((8, 8), np.uint8), 0.2, 0)


def test_training_cuts_share_range_sides_and_nesting():
    draws = training_cuts(20000, 0.3, 0.4, np.random.default_rng(5))
    cuts = [d for d in draws if d]
    assert len(cuts) / len(draws) == pytest.approx(0.3, abs=0.015)
    amounts = np.array([c for c, _ in cuts])
    assert amounts.min() > 0 and amounts.max() <= 0.4 and amounts.mean() == pytest.approx(0.2, abs=0.01)
    assert np.bincount([s for _, s in cuts], minlength=4) / len(cuts) == pytest.approx([0.25] * 4, abs=0.02)
    # a larger share keeps every copy of the smaller one, with the same cut and side
    more = training_cuts(20000, 0.6, 0.4, np.random.default_rng(5))
    assert all(more[i] == d for i, d in enumerate(draws) if d)
    assert training_cuts(50, 0.0, 0.4, np.random.default_rng(5)) == [None] * 50


def test_more_cut_copies_keep_the_single_copy_and_add_fresh_cuts():
    one = cut_copies(2000, 0.5, 0.4, 1, np.random.default_rng(7))
    three = cut_copies(2000, 0.5, 0.4, 3, np.random.default_rng(7))
    assert three[:len(one)] == one  # a single copy's draw comes first, unchanged
    assert one == [(i, c) for i, c in enumerate(training_cuts(2000, 0.5, 0.4, np.random.default_rng(7))) if c]
    assert len(three) / 2000 == pytest.approx(1.5, abs=0.06)  # three draws of share 0.5
    rng = np.random.default_rng(7)
    first, second = training_cuts(2000, 0.5, 0.4, rng), training_cuts(2000, 0.5, 0.4, rng)
    assert three[len(one):len(one) + sum(c is not None for c in second)] == [(i, c) for i, c in enumerate(second) if c]
    both = [i for i in range(2000) if first[i] and second[i]]  # images copied twice get two different cuts
    assert len(both) > 400 and all(first[i] != second[i] for i in both)
    assert cut_copies(50, 1.0, 0.4, 2, np.random.default_rng(0))[50][0] == 0  # share 1: every image twice, in order


def test_crops_of_a_cut_copy_are_placed_by_the_whole_head():
    m = disc()
    frame = (m * 200 + 30).astype(np.uint8)
    cut_frame, cut_mask = zero_cut(frame, m, 0.3, 1), zero_cut(m, m, 0.3, 1)
    x_full, y_full = training_crops([frame], [m], 64, 3, (1.2, 1.4), 0.05, torch.Generator().manual_seed(0))
    x_cut, y_cut = training_crops([cut_frame], [cut_mask], 64, 3, (1.2, 1.4), 0.05, torch.Generator().manual_seed(0),
                                  ref_masks=[m])
    # the same boxes: each crop pixel is the whole head's or black (-1) where the border cut it, but for the one
    # column of model pixels that the new border runs through (there the resize blends the two: darker)
    same, black = (x_cut == x_full), (x_cut == -1)
    assert same.float().mean() > 0.5 and black.float().mean() > 0.1
    blend = ~(same | black)
    assert (x_cut[blend] < x_full[blend]).all() and (blend.any(-2).sum(-1) <= 2).all()
    assert (y_cut <= y_full).all() and y_cut.sum() < 0.9 * y_full.sum()
    with pytest.raises(ValueError, match="ref_masks"):
        training_crops([frame], [m], 64, 1, (1.2, 1.4), 0.05, torch.Generator(), ref_masks=[])


def test_exit_rows_of_a_circle_against_hand_values():
    grid = PolarGrid(angles=8, radii=51, s_min=0.5, s_max=1.5)  # scale of row j: 0.5 + j / 50
    prior = (70.0, 50.0, 40.0, 40.0, 0.0)
    rows = exit_rows(prior, grid, (H, W))
    # ray 0 points to +x: it leaves at x > 159.5, i.e. s > 89.5 / 40 = 2.24: never within the strip
    assert rows[0] == grid.radii
    # ray 4 points to -x: x < -0.5 at s > 70.5 / 40 = 1.7625: never either; ray 2 (+y): s > 49.5 / 40 = 1.2375
    assert rows[4] == grid.radii
    assert rows[2] == math.ceil((49.5 / 40 - 0.5) * 50)
    assert rows[6] == math.ceil((50.5 / 40 - 0.5) * 50)  # -y: y < -0.5 at s > 50.5 / 40


def test_rays_that_find_the_border_are_dropped():
    rows = np.array([10.0, 30.2, 38.9, 39.5, 47.0, 47.5])
    exits = np.array([40, 40, 40, 40, 48, 48])
    # the strip has 48 rows: rays 4-5 never leave the image, so the last rows stay (nothing to confuse them with)
    got = drop_at_exit(rows, exits, 48)
    np.testing.assert_array_equal(np.isnan(got), [False, False, True, True, False, False])
    np.testing.assert_array_equal(got[~np.isnan(got)], [10.0, 30.2, 47.0, 47.5])


def test_polar_training_strips_of_cut_heads_point_at_the_border_where_the_skull_left():
    m = disc()
    img = (m * 0.8 + 0.1).astype(np.float32)
    truth = (float(CX), float(CY), float(R), float(R), 0.0)
    cfg = load_config(Hc18Config, None, ["head_polar=true", "cut_heads=1.0", "cut_max=0.4", "train.gamma=0",
                                         "train.noise_std=0", "train.hflip=false", "polar.shift=0", "polar.size=0",
                                         "polar.turn_deg=0"])
    grid = PolarGrid(angles=32, radii=32, s_min=0.75, s_max=1.25)
    x, rows = training_batch([img], [truth], grid, 8, cfg, np.random.default_rng(3), [m])
    full = np.broadcast_to(ray_hits(truth, truth, grid), rows.shape)
    moved_ = ~np.isclose(rows.numpy(), full)
    assert moved_.any() and (~moved_).any()
    strips = x[:, 0].numpy()
    r = int(round(full[0, 0]))
    for b, j in zip(*np.nonzero(moved_)):
        t = int(rows[b, j])
        # past the target row (the blurred strip's half-way step) to the skull's row the ray is black (cut away);
        # just before it, it is still in the head
        assert t <= r + 1 and (strips[b, t + 1 : r + 1, j] < strips[b].mean()).all()
        assert t == 0 or strips[b, t - 1, j] > strips[b, t, j]
    # where the target is the skull's own row, that row is in the image
    for b, j in zip(*np.nonzero(~moved_)):
        assert strips[b, r, j] > strips[b].min()
    # without masks no strip is cut
    _, plain = training_batch([img], [truth], grid, 4, cfg, np.random.default_rng(3))
    np.testing.assert_allclose(plain.numpy(), full[:4])


def test_amodal_canvas_holds_the_cut_frame_and_the_whole_head_around_it():
    m = disc()
    frame = (np.arange(H * W).reshape(H, W) % 251).astype(np.uint8)
    # cut 0.25 on the left: the frame keeps x 55..159 (105 columns); pad 0.5 adds 50 rows and round(52.5) columns
    img, mask = amodal_canvas(frame, m, 0.5, 0.25, 0)
    ph, pw = canvas_padding((H, 105), 0.5)
    assert (ph, pw) == (50, 52) and img.shape == mask.shape == (H + 100, 105 + 104)
    np.testing.assert_array_equal(img[ph:ph + H, pw:pw + 105], frame[:, 55:])
    assert img.sum() == frame[:, 55:].sum()  # zeros around the frame
    # the canvas column of native column x is x - 55 + 52: the whole disc is there, also left of the new border
    np.testing.assert_array_equal(mask[ph:ph + H, : W - 3], m[:, 3:])
    assert mask.sum() == m.sum() and mask[:, :pw].sum() > 0
    # uncut: the frame and the mask on the same canvas
    img0, mask0 = amodal_canvas(frame, m, 0.25, 0.0)
    np.testing.assert_array_equal(img0, pad_canvas(frame, 0.25))
    np.testing.assert_array_equal(mask0, pad_canvas(m, 0.25))


@pytest.mark.parametrize("override", ["cut_heads=1.5", "cut_max=0", "cut_max=0.95", "cut_copies=0", "cut_copies=9",
                                      "canvas_pad=1.5"])
def test_cut_settings_are_bounded(override):
    with pytest.raises(ConfigValueError):
        load_config(Hc18Config, None, [override])


def test_a_polar_refiner_cannot_be_amodal():
    with pytest.raises(ConfigValueError, match="amodal"):
        load_config(Hc18Config, None, ["head_polar=true", "amodal=true"])
