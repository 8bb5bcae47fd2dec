"""Slicing, fan geometry, scan conversion, sweeps and plane labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonoshift.sim.phantom import build_phantom
from sonoshift.sim.planes import PLANES, plane_label
from sonoshift.sim.primitives import Plane
from sonoshift.sim.profiles import builtin_profiles, load_profile
from sonoshift.sim.scan_convert import make_view, polar_blocks, scan_convert
from sonoshift.sim.sweeps import SWEEPS, sweep_planes


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(30.0, np.random.default_rng(5))


def test_builtin_profiles_load_and_differ() -> None:
    names = builtin_profiles()
    assert {"handheld", "cart", "phased"} <= set(names)
    hh, cart, ph = (load_profile(n) for n in ("handheld", "cart", "phased"))
    assert hh.transducer.center_mhz < cart.transducer.center_mhz
    assert hh.chain.dynamic_range_db < cart.chain.dynamic_range_db
    assert hh.chain.speckle_reduction == 0 < cart.chain.speckle_reduction
    assert hh.chain.receiver_noise > cart.chain.receiver_noise
    assert ph.geometry.radius_cm < 1.0 < hh.geometry.radius_cm  # a sector, not a curvilinear fan


@pytest.mark.parametrize("name", ["handheld", "cart", "phased"])
def test_block_culled_slicing_equals_full_slicing(phantom, name: str) -> None:
    view = make_view(load_profile(name).geometry, 96)
    for sweep in SWEEPS:
        for plane in sweep_planes(phantom, sweep, 6, np.random.default_rng(1)):
            full = phantom.slice(plane, view.X, view.Y)
            culled = phantom.slice(plane, view.X, view.Y, block=lambda b: polar_blocks(view, b))
            np.testing.assert_array_equal(full, culled)


@pytest.mark.parametrize("name", ["handheld", "phased"])
def test_scan_conversion_geometry(name: str) -> None:
    g = load_profile(name).geometry
    view = make_view(g, 128)
    # Hand-computed: the fan axis pixel at depth D/2 maps to the middle polar row and the middle column.
    row = view.depth_row(g.depth_cm / 2)
    col = int(round(view.apex_col))
    assert view.mask[row, col]
    assert view.map_r[row, col] == pytest.approx((len(view.r_cm) - 1) / 2, abs=1.5)
    assert view.map_t[row, col] == pytest.approx((len(view.theta) - 1) / 2, abs=0.6)
    # In-plane positions of the polar grid: (R + r) sin(theta), (R + r) cos(theta) - R.
    i, j = len(view.r_cm) - 1, 0
    corner_x = (g.radius_cm + g.depth_cm) * math.sin(-math.radians(g.half_angle_deg))
    assert view.X[i, j] == pytest.approx(corner_x, rel=1e-5)
    # A polar ramp (depth in cm) scan-converts to depth = distance from the apex - R.
    ramp = np.repeat(view.r_cm[:, None], len(view.theta), axis=1).astype(np.float32)
    img = scan_convert(ramp, view)
    rows, cols = np.nonzero(view.mask)
    x = (cols - view.apex_col) / view.px_per_cm
    y = (rows - view.y0_px) / view.px_per_cm
    depth = np.hypot(x, y + g.radius_cm) - g.radius_cm
    inner = (depth > 0.3) & (depth < g.depth_cm - 0.3)
    assert np.abs(img[rows, cols][inner] - depth[inner]).max() < 0.02
    assert img[~view.mask].max() == 0
    # The fan fits in the frame with margins on top (overlay text) and at the sides.
    assert not view.mask[: int(0.1 * 128)].any() and not view.mask[:, :2].any() and not view.mask[:, -2:].any()
    labels = np.random.default_rng(0).integers(1, 20, view.X.shape).astype(np.uint8)
    assert set(np.unique(scan_convert(labels, view, nearest=True))) <= set(range(20))


def test_sweeps_follow_the_protocol(phantom) -> None:
    uc = phantom.landmarks["uterus_center"]
    for sweep in SWEEPS:
        planes = sweep_planes(phantom, sweep, 12, np.random.default_rng(2))
        origins = np.array([p.origin for p in planes])
        for p in planes:
            assert abs(np.linalg.norm(p.u) - 1) < 1e-9 and abs(np.linalg.norm(p.d) - 1) < 1e-9
            assert abs(p.u @ p.d) < 1e-9
            assert p.d[2] > 0.9  # the beam points into the body
        if sweep.startswith("tr"):  # transverse: bottom (pubis) to top (fundus), image lateral = mother's x
            assert origins[-1, 1] - origins[0, 1] > phantom.landmarks["uterus_radii"][1]
            assert all(abs(p.u[0]) > 0.9 for p in planes)
        else:  # sagittal: her right to her left, image lateral = head-feet axis
            assert origins[-1, 0] - origins[0, 0] > phantom.landmarks["uterus_radii"][0]
            assert all(abs(p.u[1]) > 0.9 for p in planes)
    mid = sweep_planes(phantom, "tr-mid", 12, np.random.default_rng(2))
    left = sweep_planes(phantom, "tr-left", 12, np.random.default_rng(2))
    assert np.mean([p.origin[0] for p in left]) > np.mean([p.origin[0] for p in mid]) > uc[0] - 1.5


def test_plane_labels_follow_the_anatomy(phantom) -> None:
    """A plane through the thalami transverse to the fetal axis is 'head'; through the stomach, 'abdomen'; one
    containing a femur is 'femur'; one outside the uterus is 'other'."""
    view = make_view(load_profile("cart").geometry, 128)
    a = phantom.landmarks["fetal_frame"][0]
    z = np.array([0.0, 0.0, 1.0])

    def plane_with_normal(point, normal):
        d = z - (z @ normal) * normal
        d /= np.linalg.norm(d)
        u = np.cross(d, normal)  # so that the plane normal cross(u, d) is ``normal``
        return Plane(point - 6.0 * d, u, d)  # ``point`` 6 cm deep on the fan axis

    def plane_containing(point, direction):
        d = z - (z @ direction) * direction
        d /= np.linalg.norm(d)
        return Plane(point - 6.0 * d, direction / np.linalg.norm(direction), d)

    def label(plane):
        lm = scan_convert(phantom.slice(plane, view.X, view.Y), view, nearest=True)
        return plane_label(phantom, plane, lm, view.px_per_cm)

    assert label(plane_with_normal(phantom.landmarks["head_center"], a)) == "head"
    assert label(plane_with_normal(phantom.landmarks["abdomen_center"], a)) == "abdomen"
    p0, p1 = phantom.landmarks["femurs"][0]
    assert label(plane_containing((p0 + p1) / 2, p1 - p0)) == "femur"
    far = Plane(np.array([40.0, 40.0, 0.0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
    assert label(far) == "other"
    assert set(PLANES) == {"head", "abdomen", "femur", "other"}
