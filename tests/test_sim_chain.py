"""Imaging chain physics: contrast between tissues, bone shadow, attenuation with depth, log compression."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sonoshift.sim.chain import envelope, log_compress, render
from sonoshift.sim.profiles import Chain, load_profile
from sonoshift.sim.scan_convert import make_view
from sonoshift.sim.speckle import make_bank, scatterers
from sonoshift.sim.tissues import ATTENUATION_DB_CM_MHZ, LABEL


@pytest.fixture(scope="module")
def setup():
    p = load_profile("handheld")
    view = make_view(p.geometry, 128)
    bank = make_bank(np.random.default_rng(0), n=512)
    z, u = scatterers(bank, view.X, view.Y, key=4242, spacing_cm=0.04)
    return p, view, z, u


def _phantom_block(view) -> tuple[np.ndarray, dict]:
    """Soft tissue with a fluid block and a bone plate (polar label map) and the regions to compare."""
    n_r, n_t = view.X.shape
    labels = np.full((n_r, n_t), LABEL["fetal_soft_tissue"], dtype=np.uint8)
    r = lambda cm: int(np.searchsorted(view.r_cm, cm))  # noqa: E731
    c = lambda f: int(f * n_t)  # noqa: E731  (column at a fraction of the fan width)
    labels[r(4) : r(8), c(0.08) : c(0.35)] = LABEL["amniotic_fluid"]
    labels[r(5) : r(5.5), c(0.65) : c(0.92)] = LABEL["femur"]
    regions = {
        "fluid": (slice(r(4.5), r(7.5)), slice(c(0.12), c(0.31))),
        "tissue": (slice(r(4.5), r(7.5)), slice(c(0.42), c(0.58))),
        "bone": (slice(r(5), r(5.25)), slice(c(0.7), c(0.87))),  # the proximal surface of the plate
        "shadow": (slice(r(7), r(11)), slice(c(0.7), c(0.87))),
        "beside_shadow": (slice(r(7), r(11)), slice(c(0.42), c(0.58))),
    }
    return labels, regions


def test_fluid_darker_than_tissue_and_bone_brightest_with_a_shadow(setup) -> None:
    p, view, z, u = setup
    labels, reg = _phantom_block(view)
    img = log_compress(envelope(labels, z, u, view, p, np.random.default_rng(1)), p.chain)
    m = {k: float(img[v].mean()) for k, v in reg.items()}
    assert m["fluid"] < m["tissue"] - 0.25
    assert m["bone"] > max(m["tissue"], m["fluid"]) + 0.15
    assert m["bone"] == max(m.values())
    assert m["shadow"] < 0.5 * m["beside_shadow"] and m["beside_shadow"] - m["shadow"] > 0.1


@pytest.mark.parametrize("name", ["handheld", "cart", "phased"])
def test_brightness_falls_with_depth_at_the_attenuation_rate_without_tgc(name: str) -> None:
    p = load_profile(name)
    p = dataclasses.replace(p, chain=dataclasses.replace(p.chain, tgc=0.0, specular=0.0))
    view = make_view(p.geometry, 128)
    bank = make_bank(np.random.default_rng(2), n=512)
    z, u = scatterers(bank, view.X, view.Y, key=77, spacing_cm=0.04)
    tissue = LABEL["maternal_wall"]
    labels = np.full(view.X.shape, tissue, dtype=np.uint8)
    env = envelope(labels, z, u, view, p, rng=None).astype(np.float64)
    power = (env**2).mean(axis=1)  # mean intensity per depth
    bands = np.array_split(np.arange(5, len(power) - 5), 5)
    means = [power[b].mean() for b in bands]
    assert all(a > b for a, b in zip(means, means[1:]))
    # Hand-computed slope: round trip 2 x alpha x f dB per cm of depth.
    slope = np.polyfit(view.r_cm[5:-5], 10 * np.log10(power[5:-5]), 1)[0]
    expected = -2 * float(ATTENUATION_DB_CM_MHZ[tissue]) * p.transducer.center_mhz
    assert slope == pytest.approx(expected, rel=0.1)


def test_log_compression_maps_the_dynamic_range_to_unit_interval() -> None:
    chain = Chain(gain_db=-10.0, dynamic_range_db=40.0)
    env = np.array([10 ** (10 / 20), 1.0, 10 ** (-10 / 20), 10 ** (-30 / 20), 10 ** (-60 / 20)], dtype=np.float32)
    # 20 log10(env) + gain: 0, -10, -20, -40, -70 dB -> (dB + 40) / 40
    np.testing.assert_allclose(log_compress(env, chain), [1.0, 0.75, 0.5, 0.0, 0.0], atol=1e-6)


def test_render_is_zero_outside_the_fan_and_deterministic(setup) -> None:
    p, view, z, u = setup
    labels, _ = _phantom_block(view)
    a = render(labels, z, u, view, p, np.random.default_rng(5))
    b = render(labels, z, u, view, p, np.random.default_rng(5))
    c = render(labels, z, u, view, p, np.random.default_rng(6))
    assert a.dtype == np.uint8 and a.shape == (128, 128)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[~view.mask].max() == 0 and a[view.mask].mean() > 20
