"""Speckle statistics: Rayleigh envelope and grain size that follows the profile's PSF."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sonoshift.sim.chain import envelope
from sonoshift.sim.profiles import load_profile
from sonoshift.sim.psf import FWHM_PER_SIGMA, psf_sigmas
from sonoshift.sim.scan_convert import make_view
from sonoshift.sim.speckle import make_bank, scatterers, texture
from sonoshift.sim.tissues import ATTENUATION_DB_CM_MHZ, LABEL

TISSUE = LABEL["maternal_wall"]


def _flat_profile(name: str):
    """The profile with TGC matched exactly to the tissue's attenuation, so the mean does not change with depth."""
    p = load_profile(name)
    chain = dataclasses.replace(p.chain, tgc=1.0, tgc_nominal_db_cm_mhz=float(ATTENUATION_DB_CM_MHZ[TISSUE]),
                                tgc_max_db=1e9, specular=0.0)
    return dataclasses.replace(p, chain=chain)


def _homogeneous_envelope(name: str, size: int = 128, seed: int = 0, key: int = 12345):
    p = _flat_profile(name)
    view = make_view(p.geometry, size)
    bank = make_bank(np.random.default_rng(seed), n=512)
    z, u = scatterers(bank, view.X, view.Y, key=key, spacing_cm=0.04)
    labels = np.full(view.X.shape, TISSUE, dtype=np.uint8)
    return envelope(labels, z, u, view, p, rng=None), view, p


def test_scatterers_are_circular_gaussian_and_fixed_in_the_plane() -> None:
    bank = make_bank(np.random.default_rng(1), n=256)
    assert np.mean(np.abs(bank.z) ** 2) == pytest.approx(1.0, abs=0.01)
    assert abs(np.mean(bank.z.real * bank.z.imag)) < 0.01
    X = np.linspace(-3, 3, 50, dtype=np.float32)[None, :].repeat(4, 0)
    Y = np.full_like(X, 2.0)
    z1, _ = scatterers(bank, X, Y, 99, 0.04)
    # The same plane positions sampled by another grid (a subset, in another order) get the same scatterers.
    z2, _ = scatterers(bank, X[:, ::-3], Y[:, ::-3], 99, 0.04)
    np.testing.assert_array_equal(z1[:, ::-3], z2)
    z3, _ = scatterers(bank, X, Y, 100, 0.04)
    assert not np.array_equal(z1, z3)
    tex = texture(bank, np.tile(np.linspace(-8, 8, 200, dtype=np.float32), (200, 1)),
                  np.tile(np.linspace(0, 16, 200, dtype=np.float32)[:, None], (1, 200)), 5)
    assert 0.5 < tex.std() < 1.5 and abs(tex.mean()) < 0.5


@pytest.mark.parametrize("name", ["handheld", "cart"])
def test_fully_developed_speckle_envelope_is_rayleigh(name: str) -> None:
    env, view, _ = _homogeneous_envelope(name)
    region = env[10:-10, 10:-10].astype(np.float64)
    ratio = region.mean() / region.std()
    rayleigh = math.sqrt(math.pi / (4 - math.pi))  # 1.913 for a Rayleigh amplitude
    assert ratio == pytest.approx(rayleigh, rel=0.05)


def _fwhm(acov: np.ndarray) -> float:
    """Full width at half maximum (samples) of a normalized, symmetric autocovariance given for lags 0, 1, ..."""
    below = np.flatnonzero(acov < 0.5)[0]
    # Linear interpolation between lag below-1 and below.
    lag = below - 1 + (acov[below - 1] - 0.5) / (acov[below - 1] - acov[below])
    return 2.0 * lag


def _autocov(x: np.ndarray, axis: int) -> np.ndarray:
    x = x - x.mean(axis=axis, keepdims=True)
    n = x.shape[axis]
    f = np.fft.fft(x, n=2 * n, axis=axis)
    ac = np.fft.ifft(np.abs(f) ** 2, axis=axis).real
    ac = ac.mean(axis=1 - axis)[:n]
    return ac / ac[0]


@pytest.fixture(scope="module")
def grains() -> dict:
    out = {}
    for name in ("handheld", "cart"):
        lat_acov, ax_acov = [], []
        for key in np.random.default_rng(9).integers(0, 2**40, 8).tolist():  # eight scatterer realizations
            env, view, p = _homogeneous_envelope(name, size=256, seed=3, key=key)
            focus = int(np.argmin(np.abs(view.r_cm - p.transducer.focus_cm)))
            band = (env[focus - 4 : focus + 5, 8:-8].astype(np.float64)) ** 2  # intensity around the focus
            mid = view.X.shape[1] // 2
            depth_band = (env[10:-10, mid - 10 : mid + 10].astype(np.float64)) ** 2
            lat_acov.append(_autocov(band, axis=1))
            ax_acov.append(_autocov(depth_band, axis=0))
        sigma_r, sigma_t = psf_sigmas(view, p.transducer)
        lateral = _fwhm(np.mean(lat_acov, axis=0))
        axial = _fwhm(np.mean(ax_acov, axis=0))
        arc_mm = (p.geometry.radius_cm + p.transducer.focus_cm) * view.dtheta * 10
        out[name] = {
            "axial_samples": axial, "lateral_samples": lateral,
            "axial_expected": sigma_r * FWHM_PER_SIGMA, "lateral_expected": sigma_t[focus] * FWHM_PER_SIGMA,
            "axial_mm": axial * view.dr_cm * 10, "lateral_mm": lateral * arc_mm,
        }
    return out


@pytest.mark.parametrize("name", ["handheld", "cart"])
def test_grain_size_follows_the_psf(grains: dict, name: str) -> None:
    # For a Gaussian amplitude PSF of std s, the intensity autocovariance is exp(-d^2 / (2 s^2)): FWHM = 2.355 s,
    # i.e. the speckle grain has the PSF's own FWHM (axial and lateral).
    g = grains[name]
    assert g["axial_samples"] == pytest.approx(g["axial_expected"], rel=0.15)
    assert g["lateral_samples"] == pytest.approx(g["lateral_expected"], rel=0.15)


def test_handheld_grain_is_coarser_than_cart(grains: dict) -> None:
    hh, cart = grains["handheld"], grains["cart"]
    assert hh["axial_mm"] > 1.3 * cart["axial_mm"]
    assert hh["lateral_mm"] > 1.3 * cart["lateral_mm"]
    # And both match the YAML resolution at the focus (mm) within 15 %.
    assert hh["lateral_mm"] == pytest.approx(load_profile("handheld").transducer.lateral_fwhm_mm, rel=0.15)
    assert cart["axial_mm"] == pytest.approx(load_profile("cart").transducer.axial_fwhm_mm, rel=0.15)
