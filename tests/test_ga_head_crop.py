"""Head crops: exact native geometry of a crop map, training crops that hold the head, and the two-stage estimator
(a coarse whole-frame look, then a crop refiner) against analytic ellipse perimeters (Ramanujan)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.downstream.ellipse import fit_ellipse
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import GaEstimator, measure
from sonoshift.judges.ga.head_crop import (
    crop_box,
    crop_input,
    crop_labels,
    size_balanced_counts,
    training_crops,
)
from sonoshift.judges.ga.head_fit import fit_head
from test_ga_estimator import BrightIsHead, fake_hc18, head_image  # noqa: F401 (fixture)
from test_ga_head_fit import drawn


def test_box_is_a_centred_native_square():
    x0, y0, side = crop_box(100.0, 50.0, 40.0, 1.25)
    assert side == 100 and (x0 + (side - 1) / 2, y0 + (side - 1) / 2) == pytest.approx((100, 50), abs=0.5)
    # outside the frame the crop is black (-1); inside it is the frame's own pixels
    frame = np.full((60, 80), 255, np.uint8)
    x = crop_input(frame, (-20, -10, 40), 40)
    assert (x[:10] == -1).all() and (x[:, :20] == -1).all() and (x[10:, 20:] == 1).all()


@pytest.mark.parametrize("angle", [0.0, 40.0])
def test_fit_on_a_crop_map_measures_native_pixels(angle):
    # a 540x800 frame, a mid-size head seen through a 128 px crop of 1.3x its long axis (offset on purpose)
    native = drawn((540, 800), 300.3, 250.6, 90.0, 70.0, angle, upsample=4)
    box = crop_box(306.0, 244.0, 86.0, 1.3)
    prob = (crop_input(np.round(native * 255).astype(np.uint8), box, 128) + 1) / 2
    fit = fit_head(prob, native.shape, box=box)
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(90, 70), rel=0.002)
    assert (fit.ellipse.cx, fit.ellipse.cy) == pytest.approx((300.3, 250.6), abs=0.3)


def test_fit_on_a_crop_drops_the_frame_border():
    # the head leaves the frame at the top; the crop reaches past it: only the true outline is fitted
    native = drawn((540, 800), 400.0, 60.0, 150.0, 120.0, 0.0, upsample=2)
    box = crop_box(400.0, 60.0, 150.0, 1.3)
    prob = (crop_input(np.round(native * 255).astype(np.uint8), box, 128) + 1) / 2
    fit = fit_head(prob, native.shape, box=box)
    assert fit.border_fraction > 0.2
    assert fit.hc_px() == pytest.approx(ellipse_perimeter(150, 120), rel=0.005)


def test_training_crops_hold_the_head_near_the_centre_at_one_scale():
    frames, masks = [], []
    for a, b in ((40.0, 30.0), (150.0, 110.0)):  # a small and a large head
        img = head_image(540, 800, a, b, 20.0)
        frames.append(img)
        masks.append((img > 100).astype(np.uint8))
    x, y = training_crops(frames, masks, 64, 5, (1.2, 1.4), 0.05, torch.Generator().manual_seed(0))
    assert x.shape == (10, 1, 64, 64) and y.shape == (10, 64, 64)
    assert set(np.unique(y.numpy())) <= {0, 1}
    # the labels are the image's bright pixels, and the head's long axis spans 1 / margin of the crop
    assert ((x[:, 0] > 0) == (y == 1)).float().mean() > 0.99
    for lab in y.numpy():
        e = fit_ellipse(lab > 0)
        assert 1 / 1.4 - 0.03 < 2 * e.a / 64 < 1 / 1.2 + 0.03  # long axis = side / margin
        assert abs(e.cx - 31.5) < 0.06 * 64 and abs(e.cy - 31.5) < 0.06 * 64  # shift <= 5 % of the side
    # a crop of the mask alone gives the same labels as the training pair
    box = crop_box(400, 270, 40, 1.3)
    assert crop_labels(masks[0], box, 64).sum() == pytest.approx((crop_input(frames[0], box, 64) > 0).sum(), rel=0.02)


def test_size_balanced_counts_give_rare_head_sizes_more_crops():
    # kernel densities (25 mm): the two 100 mm heads 2/3 each, the lone 300 mm head 1/3 (exp(-32) is ~0);
    # weights 1 / density = 1.5, 1.5, 3, normalized to mean 1: 0.75, 0.75, 1.5 -> x 4 crops
    assert size_balanced_counts([100.0, 100.0, 300.0], 4, 1.0) == [3, 3, 6]
    assert size_balanced_counts([100.0, 100.0, 300.0], 4, 0.0) == [4, 4, 4]
    # square-root balance: weights sqrt(1.5), sqrt(1.5), sqrt(3) over their mean
    w = np.sqrt([1.5, 1.5, 3.0])
    assert size_balanced_counts([100.0, 100.0, 300.0], 8, 0.5) == [int(round(8 * v)) for v in w / w.mean()]
    assert size_balanced_counts([100.0, 100.0, 300.0, 300.0], 4, 1.0) == [4, 4, 4, 4]  # equal groups: equal
    assert min(size_balanced_counts(list(np.linspace(50, 60, 20)) + [350.0], 1, 2.0)) == 1  # never below one


def test_training_crops_take_one_count_per_image():
    img = head_image(540, 800, 80.0, 60.0, 0.0)
    mask = (img > 100).astype(np.uint8)
    x, y = training_crops([img, img, img], [mask] * 3, 32, [1, 0, 2], (1.2, 1.4), 0.0, torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 32, 32) and y.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="2 counts for 3 frames"):
        training_crops([img] * 3, [mask] * 3, 32, [1, 2], (1.2, 1.4), 0.0, torch.Generator().manual_seed(0))


def test_crop_refiner_corrects_a_coarse_first_stage():
    # a small head (~7 model pixels across in a 48 px frame map), anti-aliased so its outline is exact
    img = np.round(30 + 190 * drawn((540, 800), 390.2, 260.7, 60.0, 45.0, 30.0, upsample=4)).astype(np.uint8)
    truth = ellipse_perimeter(60, 45)
    coarse = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 48), tta=False)
    refiner = Segmenter(BrightIsHead(), ("background", "head"), 64)
    two = GaEstimator(coarse.segmenter, tta=False, refiners=(refiner,), crop_margin=1.3)
    first = measure(coarse, [img], [1.0]).iloc[0]["hc_px"]
    second = measure(two, [img], [1.0]).iloc[0]["hc_px"]
    assert abs(second - truth) < 0.005 * truth
    assert abs(first - truth) > 3 * abs(second - truth)


def test_refiner_keeps_the_first_fit_when_it_finds_nothing():
    class NothingIsHead(BrightIsHead):
        def forward(self, x):
            return torch.cat([torch.ones_like(x), -self.k * torch.ones_like(x)], 1)

    img = head_image(270, 400, 100.0, 80.0)
    first = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 64), tta=False)
    two = GaEstimator(first.segmenter, tta=False, refiners=(Segmenter(NothingIsHead(), ("background", "head"), 32),))
    a, b = measure(first, [img], [1.0]).iloc[0], measure(two, [img], [1.0]).iloc[0]
    assert b["head_found"] and b["hc_px"] == a["hc_px"]



def test_refiner_that_grows_the_head_beyond_the_limit_is_not_taken():
    class SacIsHead(BrightIsHead):  # dim pixels count too: the fluid sac around the head
        def forward(self, x):
            return torch.cat([torch.zeros_like(x), self.k * (x + 0.6)], 1)

    img = np.full((400, 540), 30, np.uint8)
    cv2.ellipse(img, ((270, 200), (220, 180), 0), 110, -1)  # sac, semi-axes 110 x 90
    cv2.ellipse(img, ((270, 200), (200, 160), 0), 220, -1)  # head, semi-axes 100 x 80
    first = GaEstimator(Segmenter(BrightIsHead(), ("background", "head"), 128), tta=False)
    sac = (Segmenter(SacIsHead(), ("background", "head"), 64),)
    head_hc, sac_hc = ellipse_perimeter(100, 80), ellipse_perimeter(110, 90)
    a = measure(first, [img], [1.0]).iloc[0]["hc_px"]
    grown = measure(GaEstimator(first.segmenter, tta=False, refiners=sac), [img], [1.0]).iloc[0]["hc_px"]
    kept = measure(GaEstimator(first.segmenter, tta=False, refiners=sac, refine_max_growth=1.05), [img],
                   [1.0]).iloc[0]["hc_px"]
    # (cv2.ellipse draws whole pixels: its outline lies up to a pixel outside the nominal ellipse)
    assert abs(a - head_hc) < 0.03 * head_hc and abs(grown - sac_hc) < 0.03 * sac_hc  # the refiner took the sac
    assert kept == a  # growth 1.1 > 1.05: the first fit stays
    assert measure(GaEstimator(first.segmenter, tta=False, refiners=sac, refine_max_growth=1.2), [img],
                   [1.0]).iloc[0]["hc_px"] == grown

def test_refiner_flip_averaging_is_its_own_switch():
    """A refiner whose map is the image shifted two model pixels to the right: its head centre moves right by
    two crop pixels; averaged with its flipped twin (shifted left) the centre is back. The first stage's own
    flip averaging (``tta``) does not touch the refiner's (``refine_tta``)."""

    class ShiftRight(BrightIsHead):
        def forward(self, x):
            return torch.cat([torch.zeros_like(x), self.k * torch.roll(x, 2, -1)], 1)

    img = np.round(30 + 190 * drawn((540, 800), 400.0, 270.0, 120.0, 90.0, 0.0, upsample=4)).astype(np.uint8)
    first = Segmenter(BrightIsHead(), ("background", "head"), 128)
    refs = (Segmenter(ShiftRight(), ("background", "head"), 64),)
    px = 2 * 1.3 * 120 / 64  # native pixels per crop pixel
    for tta in (False, True):
        plain = measure(GaEstimator(first, tta=tta, refiners=refs, refine_tta=False), [img], [1.0]).iloc[0]
        flip = measure(GaEstimator(first, tta=tta, refiners=refs, refine_tta=True), [img], [1.0]).iloc[0]
        assert plain["cx"] - 400.0 == pytest.approx(2 * px, abs=0.5)
        assert abs(flip["cx"] - 400.0) < 0.5 and abs(flip["cy"] - 270.0) < 0.5
    # refine_tta None follows tta
    same = measure(GaEstimator(first, tta=True, refiners=refs), [img], [1.0]).iloc[0]
    assert abs(same["cx"] - 400.0) < 0.5


def test_crop_refiner_trains_on_crops_and_build_makes_it_the_second_stage(fake_hc18, tmp_path):
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter
    from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig
    from sonoshift.judges.ga.estimator import load_ga_estimator
    from sonoshift.judges.ga.hc18_report import build_estimator
    from sonoshift.judges.ga.onnx_net import with_runtime

    tiny = dict(data_dir=str(fake_hc18), image_size=32, val_fraction=0.25,
                model=ModelConfig(channels=(4, 8), strides=(2,)), train=SegmenterTrainConfig(steps=4, batch_size=4))
    train_hc18_segmenter(Hc18Config(**tiny), tmp_path / "frame", progress=False)
    seg, val = train_hc18_segmenter(Hc18Config(**tiny, head_crops=3, crop_margin=(1.2, 1.4)), tmp_path / "crop",
                                    progress=False)
    assert seg.info["head_crop"] == {"margin": pytest.approx(1.3), "train_crops": 3 * seg.info["train_images"]}
    assert val.empty  # a crop refiner is validated inside the estimator, behind a first stage
    with pytest.raises(SonoshiftError, match="whole-frame segmenter"):
        build_estimator([tmp_path / "crop"], fake_hc18, tmp_path / "none")
    build_estimator([tmp_path / "crop", tmp_path / "frame"], fake_hc18, tmp_path / "est")
    est = load_ga_estimator(tmp_path / "est")
    assert [s.image_size for s in est.segmenters] == [32] and len(est.refiners) == 1
    assert est.segmenter.info["ga_estimator"]["refiners"] == ["refiner_0"] and est.crop_margin == pytest.approx(1.3)
    assert est.refine_max_growth == est.segmenter.info["ga_estimator"]["refine_max_growth"] == 1.06
    # with a refiner the first stage only places the crop: no flip averaging by default in either stage
    assert est.tta is False and est.refine_tta is False
    flip = build_estimator([tmp_path / "crop", tmp_path / "frame"], fake_hc18, tmp_path / "flip", refine_tta=True)
    assert load_ga_estimator(tmp_path / "flip").refine_tta is True and flip.tta is False
    assert load_ga_estimator(tmp_path / "est").tta is False
    one = build_estimator([tmp_path / "frame"], fake_hc18, tmp_path / "one")
    assert one.tta is True and load_ga_estimator(tmp_path / "one").tta is True
    assert len(with_runtime(est, "onnx").refiners) == 1


@pytest.mark.slow
def test_cross_validation_of_the_two_stage_estimator(fake_hc18, tmp_path):
    """A crop refiner config among the members: every fold's estimator is two-stage, neither stage saw the fold's
    images, and the first-stage table equals an estimator built from the fold's whole-frame segmenter alone."""
    import pandas as pd

    from sonoshift.downstream.hc18 import Hc18Config
    from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig
    from sonoshift.judges.ga.estimator import load_ga_estimator
    from sonoshift.judges.ga.hc18_cv import cross_validate
    from sonoshift.judges.ga.hc18_report import build_estimator, evaluate_rows, heldout_rows

    tiny = dict(data_dir=str(fake_hc18), image_size=32, model=ModelConfig(channels=(4, 8), strides=(2,)),
                train=SegmenterTrainConfig(steps=40, batch_size=4))
    s = cross_validate([Hc18Config(**tiny), Hc18Config(**tiny, head_crops=2)], tmp_path / "cv", folds=3,
                       progress=False)
    table = pd.read_csv(tmp_path / "cv" / "per_image.csv")
    first = pd.read_csv(tmp_path / "cv" / "per_image_first_stage.csv")
    assert sorted(table["name"]) == sorted(first["name"]) == sorted(f"{i:03d}_HC.png" for i in range(12))
    assert len(s["first_stage_fold_hc_abs_err_mm_mean"]) == len(s["fold_hc_abs_err_mm_mean"]) == 3
    assert first["head_found"].all() and table["head_found"].all()
    assert s["first_stage_hc_abs_err_mm_mean"] == pytest.approx(first["hc_abs_err_mm"].mean())
    fold = tmp_path / "cv" / "fold_1"
    est = load_ga_estimator(fold / "estimator")
    held = set(table.loc[table["fold"] == 1, "name"])
    assert len(est.refiners) == 1 and est.refiners[0].info["head_crop"]
    for seg in (est.segmenter, est.refiners[0]):
        assert set(seg.info["val_files"]) == held and seg.info["train_images"] == 12 - len(held)
    alone = build_estimator([fold / "segmenter_0"], fake_hc18, tmp_path / "alone")
    ref = evaluate_rows(alone, heldout_rows(alone.segmenter, fake_hc18)[1]).set_index("name")
    got = first[first["fold"] == 1].set_index("name").loc[ref.index]
    np.testing.assert_allclose(got["hc_mm"], ref["hc_mm"], rtol=1e-6)
