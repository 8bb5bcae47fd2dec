"""The crop search: a map's ellipticity (IoU with its fitted ellipse) against drawn shapes, and the rescue of a
refiner that, in a crop too large for the head, takes the tissue beside it (analytic perimeters as reference)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.judges.ga.crop_search import map_ellipse_iou
from sonoshift.judges.ga.estimator import GaEstimator, measure
from sonoshift.judges.ga.head_fit import fit_head
from test_ga_estimator import BrightIsHead
from test_ga_head_fit import drawn


@pytest.mark.parametrize("box", [(0, 0, 128), (300, 40, 256)])
def test_an_elliptic_map_overlaps_its_ellipse(box):
    prob = drawn((128, 128), 60.3, 66.1, 45.0, 30.0, 35.0, upsample=4)
    fit = fit_head(prob, (800, 800), box=box)
    assert map_ellipse_iou(prob, fit, box) > 0.97


def test_a_blob_does_not():
    # a disk with a square of its own width beside it: the best ellipse through its outline covers at most the
    # disk's and square's bulk; the union of the two is far from any ellipse (the refiner's failure: tissue taken)
    prob = np.zeros((128, 128), np.float32)
    cv2.circle(prob, (45, 64), 25, 1.0, -1)
    prob[39:90, 60:111] = 1.0
    fit = fit_head(prob, (128, 128), box=(0, 0, 128))
    assert fit.found and map_ellipse_iou(prob, fit, (0, 0, 128)) < 0.9
    assert map_ellipse_iou(prob, fit_head(np.zeros_like(prob), (128, 128), box=(0, 0, 128)), (0, 0, 128)) == 0.0


class FooledByLargeCrops(BrightIsHead):
    """A refiner that, like the trained one, expects the head to fill its crop: where the bright head covers less
    than a fifth of the crop it also labels the dim tissue as head; otherwise only the bright head."""

    def forward(self, x):
        bright, dim = (x > 0.3).float(), (x > -0.6).float()
        small = (bright.mean((1, 2, 3), keepdim=True) < 0.2).float()
        head = torch.maximum(bright, small * dim)
        return torch.cat([torch.zeros_like(x), self.k * (head - 0.5)], 1)


class BrightOrDim(BrightIsHead):
    def forward(self, x):
        return torch.cat([torch.zeros_like(x), self.k * (x + 0.6)], 1)


def _head_and_tissue() -> np.ndarray:
    img = np.full((400, 600), 30, np.uint8)
    img[170:231, 340:441] = 110  # dim tissue beside the head (semi-axes below)
    head = drawn(img.shape, 300.0, 200.0, 60.0, 60.0, 0.0, upsample=4)
    return np.round(img * (1 - head) + 220 * head).astype(np.uint8)


def test_rescue_finds_the_head_the_refiner_lost_in_a_large_crop():
    img = _head_and_tissue()
    truth = ellipse_perimeter(60, 60)
    first = Segmenter(BrightOrDim(), ("background", "head"), 128)  # takes head + tissue: too large a crop
    refs = (Segmenter(FooledByLargeCrops(), ("background", "head"), 64),)
    plain = GaEstimator(first, tta=False, refiners=refs, refine_max_growth=1.06)
    rescued = GaEstimator(first, tta=False, refiners=refs, refine_max_growth=1.06, rescue_iou=0.9)
    hc_first = measure(GaEstimator(first, tta=False), [img], [1.0]).iloc[0]["hc_px"]
    hc_plain = measure(plain, [img], [1.0]).iloc[0]["hc_px"]
    hc_rescued = measure(rescued, [img], [1.0]).iloc[0]["hc_px"]
    assert hc_first > 1.2 * truth and hc_plain > 1.2 * truth  # both stages measure head + tissue
    assert hc_rescued == pytest.approx(truth, rel=0.01)


def test_rescue_leaves_an_elliptic_refinement_alone():
    img = np.round(30 + 190 * drawn((400, 600), 300.0, 200.0, 70.0, 50.0, 20.0, upsample=4)).astype(np.uint8)
    first = Segmenter(BrightIsHead(), ("background", "head"), 48)
    refs = (Segmenter(FooledByLargeCrops(), ("background", "head"), 64),)
    a = measure(GaEstimator(first, tta=False, refiners=refs), [img], [1.0]).iloc[0]
    b = measure(GaEstimator(first, tta=False, refiners=refs, rescue_iou=0.9), [img], [1.0]).iloc[0]
    assert b["hc_px"] == a["hc_px"] and math.isclose(a["hc_px"], ellipse_perimeter(70, 50), rel_tol=0.01)
