"""Texture spectrum against analytic references; patient bootstrap against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sonoshift.metrics.bootstrap import patient_bootstrap, patient_bootstrap_ratio
from sonoshift.metrics.spectrum import radial_power_spectrum, spectrum_distance


def _white(n: int, size: int, sd: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, sd, (n, size, size))


def test_white_noise_has_a_flat_spectrum_at_its_variance():
    sd = 0.1
    p = radial_power_spectrum(torch.from_numpy(_white(64, 64, sd))).mean(dim=0).numpy()
    assert p.shape == (32,)
    # E|FFT|^2 / N = sigma^2 at every frequency; 64 images, >= 6 frequencies per radius: within 10 %
    np.testing.assert_allclose(p, sd**2, rtol=0.10)


def test_blurred_noise_falls_as_the_gaussian_transfer_function_squared():
    sd, sigma, size = 0.1, 1.5, 64
    noise = _white(64, size, sd, seed=1)
    blurred = np.stack([gaussian_filter(x, sigma, mode="wrap", truncate=6.0) for x in noise])
    p = radial_power_spectrum(torch.from_numpy(blurred)).mean(dim=0).numpy()
    f = np.arange(1, size // 2 + 1) / size  # cycles per pixel at each radius
    expect = sd**2 * np.exp(-4 * math.pi**2 * sigma**2 * f**2)  # |H(f)|^2 of a Gaussian of std sigma px
    keep = expect > 1e-3 * sd**2
    assert keep.sum() >= 8
    # log ratio within 0.1 decade where the transfer is above 1e-3 (radius bins average over +-0.5 / size)
    np.testing.assert_allclose(np.log10(p[keep]), np.log10(expect[keep]), atol=0.1)


def test_spectrum_distance_zero_for_same_texture_large_for_blur():
    noise = torch.from_numpy(_white(4, 32, 0.1, seed=2))
    blurred = torch.from_numpy(np.stack([gaussian_filter(x.numpy(), 1.0, mode="wrap") for x in noise]))
    assert torch.equal(spectrum_distance(noise, noise), torch.zeros(4, dtype=torch.float64))
    other = torch.from_numpy(_white(4, 32, 0.1, seed=3))
    same_texture = spectrum_distance(noise, other)
    assert float(same_texture.max()) < 3.0  # dB: sampling noise of single images
    assert float(spectrum_distance(blurred, noise).min()) > 3 * float(same_texture.max())
    # a gain of 2 in amplitude is +6.02 dB at every radius
    torch.testing.assert_close(spectrum_distance(0.5 + 2 * (noise - 0.5), noise),
                               torch.full((4,), 20 * math.log10(2), dtype=torch.float64))


def test_patient_bootstrap_hand_case():
    # patient A: two frames of 1, patient B: one frame of 3. Replicates: AA -> 1, BB -> 3, AB / BA -> 5/3.
    iv = patient_bootstrap([1.0, 1.0, 3.0], ["A", "A", "B"], n_boot=4000, seed=0)
    assert iv.mean == pytest.approx(5 / 3) and iv.patients == 2
    assert iv.low == pytest.approx(1.0) and iv.high == pytest.approx(3.0)
    one = patient_bootstrap([2.0, 4.0, float("nan")], ["A", "A", "A"])
    assert (one.mean, one.low, one.high, one.patients) == (3.0, 3.0, 3.0, 1)


def test_patient_bootstrap_ratio_hand_case():
    # patient A: gains 0.3 + 0.1 of gaps 0.4 + 0.4; patient B: 0.4 of 0.4. Replicates: AA -> 0.5, BB -> 1, AB -> 2/3.
    iv = patient_bootstrap_ratio([0.3, 0.1, 0.4], [0.4, 0.4, 0.4], ["A", "A", "B"], n_boot=4000, seed=0)
    assert iv.mean == pytest.approx(0.8 / 1.2) and iv.patients == 2
    assert iv.low == pytest.approx(0.5) and iv.high == pytest.approx(1.0)
    # a frame with a NaN on either side is left out of both sums
    nan = patient_bootstrap_ratio([0.3, float("nan"), 0.2], [0.4, 0.4, float("nan")], ["A", "A", "A"])
    assert nan.mean == pytest.approx(0.75) and nan.low == nan.high == nan.mean and nan.patients == 1
    with pytest.raises(ValueError, match="same length"):
        patient_bootstrap_ratio([1.0], [1.0, 2.0], ["A"])


def test_patient_bootstrap_width_matches_the_normal_theory():
    rng = np.random.default_rng(5)
    n = 400
    v = rng.normal(0.0, 1.0, n)
    iv = patient_bootstrap(v, [f"P{i}" for i in range(n)], n_boot=4000, seed=1)
    half = 1.96 / math.sqrt(n)
    assert (iv.high - iv.low) / 2 == pytest.approx(half, rel=0.15)
    # duplicating every frame within its patient does not narrow the interval (frames are not independent)
    iv2 = patient_bootstrap(np.repeat(v, 5), np.repeat([f"P{i}" for i in range(n)], 5), n_boot=4000, seed=1)
    assert (iv2.high - iv2.low) == pytest.approx(iv.high - iv.low, rel=1e-9)


def test_ci_table_reads_scored_runs(tmp_path):
    import csv

    import cv2

    from sonoshift.metrics.ci_table import ci_table

    run = tmp_path / "run"
    (run / "outputs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, outs = [], []
    for i, (pid, v) in enumerate([("P1", 20.0), ("P1", 22.0), ("P2", 30.0)]):
        img = rng.integers(0, 255, (16, 16)).astype(np.uint8)
        cv2.imwrite(str(run / "outputs" / f"{i}.png"), img)
        cv2.imwrite(str(run / "outputs" / f"gt{i}.png"), img)
        gt = str(run / "outputs" / f"gt{i}.png")
        outs.append({"output_path": f"outputs/{i}.png", "source_path": "x", "gt_path": gt, "mask_path": "",
                     "patient_id": pid})
        rows.append({"method": "m", "reference": "gt", "output_path": f"outputs/{i}.png", "patient_id": pid,
                     "psnr": v, "ssim": 0.5, "lncc": 0.1 * (i + 1), "bc": 1.0})
    for name, table in (("outputs.csv", outs), ("metrics.csv", rows)):
        with open(run / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    text = ci_table([run])
    # psnr: frame mean 24; patient replicates: P1P1 -> 21, P2P2 -> 30: interval [21, 30]; identical images: 0 dB
    assert "| m | 24.000 [21.000, 30.000] | 0.500 [0.500, 0.500] |" in text
    assert "0.000 [0.000, 0.000] |" in text and "2 patients" in text
