"""Targeted acquisitions of the three biometry planes (head, abdomen, femur), as a sonographer scans them.

Blind VSI sweeps rarely cut a standard plane (in a 12-patient demo, 90% of frames are "other" and femur planes
are almost absent), so no verdict per plane can rest on them. A targeted sweep is a short cine-loop that rocks
the probe through one standard plane: the plane passes through the landmark with the orientation the plane
label checks (``sim.planes``), its offset along the plane normal goes from -0.8 to +0.8 of the structure's
tolerance over the loop, with a small hand wobble (tilt <= 6 deg, rotation about the beam <= 5 deg; less for the femur).

- ``std-head``: transverse to the fetal body axis through the thalami (transthalamic);
- ``std-abdomen``: transverse through the stomach;
- ``std-femur``: the plane containing the (better placed) femur, beam perpendicular to the bone.

The probe sits on the maternal skin (z = 0) above the landmark (pressed in when the landmark would lie deeper
than 10 cm along the beam), the beam (depth axis d) as close to vertical as
the plane allows; when the plane is steep (|d_z| < 0.5), it is tilted by at most 20 deg (within the label's
tolerance) to make room for the probe.
"""

from __future__ import annotations

import math

import numpy as np

from sonoshift.sim.phantom import Phantom
from sonoshift.sim.primitives import Plane

STANDARD_SWEEPS: tuple[str, ...] = ("std-head", "std-abdomen", "std-femur")
_Z = np.array([0.0, 0.0, 1.0])
MAX_DEPTH_CM = 10.0  # the landmark's depth along the beam at most; fans here reach 14-16 cm


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    axis = _unit(axis)
    return v * math.cos(angle) + np.cross(axis, v) * math.sin(angle) + axis * (axis @ v) * (1 - math.cos(angle))


def _beam_for_normal(n: np.ndarray, max_tilt_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(normal, depth) with depth in the plane of normal n, as vertical as possible; n is tilted towards the
    horizontal by at most ``max_tilt_deg`` when the plane is too steep for a vertical-ish beam."""
    n = _unit(n)
    best = n
    for deg in np.linspace(0.0, max_tilt_deg, 9):
        # rotate n away from the vertical, about the horizontal axis perpendicular to it
        axis = np.cross(n, _Z)
        if np.linalg.norm(axis) < 1e-9:
            break
        cand = _rotate(n, axis, -math.radians(deg) * np.sign(n @ _Z))
        best = cand
        d = _Z - (_Z @ cand) * cand
        if np.linalg.norm(d) > 0.5:
            break
    d = _unit(_Z - (_Z @ best) * best)
    return best, d


def standard_sweep_planes(phantom: Phantom, sweep: str, n_frames: int, rng: np.random.Generator) -> list[Plane]:
    """The probe plane of each of ``n_frames`` frames of the targeted sweep ``sweep`` (one of STANDARD_SWEEPS)."""
    lm = phantom.landmarks
    kind = sweep.removeprefix("std-")
    if kind == "head":
        center, n, tol, max_tilt = lm["head_center"], lm["fetal_frame"][0], lm["thalamus_radius"], 20.0
    elif kind == "abdomen":
        center, n, tol, max_tilt = lm["abdomen_center"], lm["fetal_frame"][0], lm["stomach_radius"], 20.0
    elif kind == "femur":
        # the femur whose beam can be the most vertical (bone the most horizontal)
        segs = [(np.asarray(p0, float), np.asarray(p1, float)) for p0, p1 in lm["femurs"]]
        p0, p1 = min(segs, key=lambda s: abs(_unit(s[1] - s[0]) @ _Z))
        v = _unit(p1 - p0)
        d = _unit(_Z - (_Z @ v) * v)
        n = np.cross(v, d)
        center, tol, max_tilt = 0.5 * (p0 + p1), lm["femur_radius"] + 0.2, 0.0
    else:
        raise ValueError(f"unknown standard sweep {sweep!r}; known: {STANDARD_SWEEPS}")
    n, d = _beam_for_normal(n, max_tilt)
    # A femur is long and thin: rotation about the beam or an offset of a few mm takes its ends out of the plane,
    # so its loop rocks less (offsets +-0.2 of the tolerance, rotation about the beam <= 1.5 deg).
    femur = kind == "femur"
    offsets = np.linspace(-0.8, 0.8, n_frames) * tol * (0.25 if femur else 1.0)
    tilt = rng.uniform(-1, 1, 2) * math.radians(6.0)
    spin = rng.uniform(-1, 1, 2) * math.radians(1.5 if femur else 5.0)
    planes = []
    for k in range(n_frames):
        f = k / max(n_frames - 1, 1)
        u = np.cross(d, n)
        dk = _rotate(d, u, tilt[0] + (tilt[1] - tilt[0]) * f)
        uk = _rotate(u, dk, spin[0] + (spin[1] - spin[0]) * f)
        nk = np.cross(uk, dk)
        c = center + offsets[k] * nk
        # On the skin (z = 0) along the beam, or pressed in to at most MAX_DEPTH_CM above the landmark (as a
        # sonographer compresses the abdomen to bring a deep structure into the fan).
        origin = c - min((c @ _Z) / max(dk @ _Z, 0.2), MAX_DEPTH_CM) * dk
        planes.append(Plane(origin, _unit(uk), _unit(dk)))
    return planes
