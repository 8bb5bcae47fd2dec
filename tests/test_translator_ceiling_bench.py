"""bench/translator_ceiling.py: the share of the Dice gap and its patient interval against values worked out by hand,
the paired networks start as their anchor, the masked L1, and a missing ground truth refused in one sentence."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor import AffineMatch

from test_ddgan_method import tiny_run  # noqa: F401  (a tiny dataset and a CycleGAN trained on it)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the bench imports its sibling ablate_ddgan
_spec = importlib.util.spec_from_file_location("translator_ceiling", ROOT / "bench" / "translator_ceiling.py")
tc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tc)


def test_share_is_the_ratio_of_summed_gains_and_its_interval_spans_the_patients_ratios() -> None:
    patients = np.array(["a", "a", "b"])
    raw, gt = np.array([0.2, 0.2, 0.4]), np.array([0.6, 0.6, 0.8])
    assert tc.share_interval(gt, raw, gt, patients) == (1.0, 1.0, 1.0)
    assert tc.share_interval(raw, raw, gt, patients) == (0.0, 0.0, 0.0)
    d = np.array([0.5, 0.3, 0.8])  # gains 0.3 + 0.1 (patient a: 0.4 of 0.8), 0.4 (patient b: 0.4 of 0.4)
    point, lo, hi = tc.share_interval(d, raw, gt, patients)
    assert point == pytest.approx(0.8 / 1.2)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.0)  # resamples of a only / b only


def test_masked_l1_reads_only_the_field_of_view() -> None:
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    m = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert float(tc.masked_l1(a, b, m)) == pytest.approx(3.0)


@pytest.mark.parametrize("name", list(tc.PAIRED))
def test_an_untrained_paired_network_returns_its_anchor(name: str) -> None:
    anchor = AffineMatch(60.0, 20.0, 80.0, 30.0)
    net = tc.PAIRED[name][0](anchor).eval()
    assert tc.PAIRED[name][2] > 0
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), anchor(x).clamp(-1, 1))


def test_paired_training_lowers_the_validation_error_and_keeps_the_best_checkpoint() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 16, 16, generator=g) * 2 - 1
    y = (0.5 * x - 0.2).clamp(-1, 1)  # a grey-level map the anchor does not know
    m = torch.ones_like(x)
    anchor = AffineMatch(100.0, 50.0, 100.0, 50.0)  # the identity on foreground levels
    net = tc.PAIRED["paired_mobile"][0](anchor)
    with torch.no_grad():
        before = float(tc.masked_l1(net(x[48:]), y[48:], m[48:]))
    net, history = tc.train_paired(net, (x[:48], y[:48], m[:48]), (x[48:], y[48:], m[48:]), 60, seed=0)
    with torch.no_grad():
        after = float(tc.masked_l1(net(x[48:]), y[48:], m[48:]))
    assert [s for s, _ in history] == [60]
    assert after == pytest.approx(history[0][1], rel=1e-5) and after < 0.5 * before


def test_a_dataset_without_ground_truth_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(SonoshiftError, match="needs a simulated dataset with ground truth"):
        tc.pairs(tmp_path, "train", "handheld", "cart")


def test_cyclegan_pairs_are_the_target_frames_and_their_synthetic_sources(tiny_run) -> None:
    from sonoshift.methods.ddgan import load_cyclegan

    x, y, m = tc.cyclegan_pairs(tiny_run["data"], "train", "cart", tiny_run["cg"])
    frames = np.load(tiny_run["data"] / "cache" / "train" / "cart.npy")
    assert torch.allclose(y[:, 0], torch.from_numpy(frames.astype(np.float32)) / 127.5 - 1)
    assert torch.equal(m[:, 0], torch.from_numpy(frames > 0).float())  # no masks in this dataset: non-black pixels
    with torch.no_grad():
        expected = load_cyclegan(tiny_run["cg"], torch.device("cpu")).G_ba(y).clamp(-1, 1)
    assert torch.allclose(x, expected, atol=1e-6) and not torch.allclose(x, y)
