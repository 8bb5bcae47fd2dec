"""Pseudo-labels for the generator's unlabelled images (difusal/pseudo.py, ``generator.pseudo_label_conf``):
only confident standard-plane answers of the frozen critic become plane tokens, the background plane never does,
and nothing else about the frames changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonoshift.config import load_config
from sonoshift.difusal.config import DifusalConfig
from sonoshift.difusal.data import Frames
from sonoshift.difusal.pseudo import counts, pseudo_label
from sonoshift.difusal.rounds import Regime, generator_unlabelled
from sonoshift.errors import SonoshiftError


def _frames(levels: list[float]) -> Frames:
    """One 4x4 frame per level (every pixel = level), unlabelled: plane -1, GA NaN."""
    n = len(levels)
    x = torch.tensor(levels, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    return Frames(x, np.full(n, -1, np.int64), np.full(n, np.nan), np.array([f"p{i}" for i in range(n)]),
                  np.array([f"cart/v{i}" for i in range(n)]), np.ones(n, np.int64))


def test_only_confident_answers_outside_the_excluded_planes_become_labels():
    f = _frames([0.0] * 5)
    probs = np.array([[0.90, 0.05, 0.05],   # confident plane 0 -> 0
                      [0.50, 0.40, 0.10],   # below 0.6 -> null
                      [0.10, 0.20, 0.70],   # confident, but plane 2 is excluded -> null
                      [0.00, 0.60, 0.40],   # exactly at the threshold -> 1
                      [0.30, 0.30, 0.40]])  # unsure -> null
    out = pseudo_label(f, probs, 0.6, exclude=[2])
    assert out.y.tolist() == [0, -1, -1, 1, -1]
    assert counts(out, 3) == [1, 1, 0]
    # images, GA (unknown), patients, videos and domain tokens are the same objects' values
    assert torch.equal(out.x, f.x) and np.isnan(out.ga).all()
    assert out.patients.tolist() == f.patients.tolist() and out.videos.tolist() == f.videos.tolist()
    assert out.domain.tolist() == f.domain.tolist()


def test_zero_confidence_is_off_and_a_wrong_shape_is_one_sentence():
    f = _frames([0.0, 0.5])
    assert pseudo_label(f, np.eye(2), 0.0).y.tolist() == [-1, -1]
    with pytest.raises(SonoshiftError, match="one row of plane probabilities per frame"):
        pseudo_label(f, np.ones((3, 2)) / 2, 0.5)


class _LevelCritic(torch.nn.Module):
    """A stand-in plane critic: the frame's mean grey level picks the plane (< -0.5: 0, < 0.5: 1, else 2) with
    logit 10 against 0, so its answer is certain (probability ~0.99995)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        plane = (m >= -0.5).long() + (m >= 0.5).long()
        return 10.0 * torch.nn.functional.one_hot(plane, 3).float() + 0 * self.w


def test_the_generator_images_take_the_critics_plane_but_never_the_background_plane():
    levels = [-0.9, -0.1, 0.9, -0.8, 0.2]  # planes 0, 1, 2, 0, 1 by the critic's rule
    un = _frames(levels)
    empty = Frames(torch.zeros(0, 1, 4, 4), np.zeros(0, np.int64), np.zeros(0), np.array([], dtype=str))
    reg = Regime("regime_010", 0.1, empty, empty, empty, un)
    base = ["data.planes=[abdomen,head,other]", "data.background_plane=other", "data.head_plane=head"]
    on = load_config(DifusalConfig, None, [*base, "generator.pseudo_label_conf=0.9"])
    assert generator_unlabelled(on, reg, _LevelCritic()).y.tolist() == [0, 1, -1, 0, 1]
    # without a background plane every confident answer is kept; off, the images stay unlabelled
    nobg = load_config(DifusalConfig, None, [*base[:1], "data.background_plane=''", "data.head_plane=head",
                                             "generator.pseudo_label_conf=0.9"])
    assert generator_unlabelled(nobg, reg, _LevelCritic()).y.tolist() == [0, 1, 2, 0, 1]
    off = load_config(DifusalConfig, None, base)
    assert generator_unlabelled(off, reg, _LevelCritic()).y.tolist() == [-1] * 5
