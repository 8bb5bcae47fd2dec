"""The VSI obstetric sweep protocol: probe planes for every frame of a cine-loop.

Six blind sweeps over the gravid abdomen (Volume Sweep Imaging, as in the point-of-care VSI protocol):
- three transverse sweeps, probe marker to the mother's right, moved from the pubis to the fundus (bottom to
  top), on the right, middle and left of the uterus (``tr-right``, ``tr-mid``, ``tr-left``); the lateral ones are
  angled 12 degrees towards the midline;
- three sagittal sweeps, marker to the mother's head, moved from her right to her left, low, middle and high on
  the uterus (``sag-low``, ``sag-mid``, ``sag-high``).
A handheld operator is not a robot: each sweep gets a smooth random wobble of tilt (+-5 deg), rotation (+-4 deg),
drift (+-0.6 cm) and uneven speed, drawn from the sweep's numpy Generator.
"""

from __future__ import annotations

import math

import numpy as np

from sonoshift.sim.phantom import Phantom
from sonoshift.sim.primitives import Plane

SWEEPS: tuple[str, ...] = ("tr-right", "tr-mid", "tr-left", "sag-low", "sag-mid", "sag-high")


def _smooth_curve(rng: np.random.Generator, n: int, amplitude: float, knots: int = 4) -> np.ndarray:
    """A smooth random curve of ``n`` samples in [-amplitude, amplitude] (linear between random knots, smoothed)."""
    kx = np.linspace(0, 1, knots)
    ky = rng.uniform(-amplitude, amplitude, knots)
    t = np.linspace(0, 1, n)
    return np.interp(t, kx, ky)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about unit ``axis`` by ``angle`` (rad)."""
    axis = axis / np.linalg.norm(axis)
    return v * math.cos(angle) + np.cross(axis, v) * math.sin(angle) + axis * (axis @ v) * (1 - math.cos(angle))


def sweep_planes(phantom: Phantom, sweep: str, n_frames: int, rng: np.random.Generator) -> list[Plane]:
    """The probe plane of each of ``n_frames`` frames of ``sweep`` (one of SWEEPS) over ``phantom``."""
    if sweep.startswith("std-"):  # a targeted acquisition of a standard plane (sim.standard_planes)
        from sonoshift.sim.standard_planes import standard_sweep_planes

        return standard_sweep_planes(phantom, sweep, n_frames, rng)
    if sweep not in SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; known: {SWEEPS}")
    uc = phantom.landmarks["uterus_center"]
    cav = phantom.landmarks["uterus_radii"]
    kind, where = sweep.split("-")
    t = np.linspace(0.0, 1.0, n_frames)
    t = np.clip(t + _smooth_curve(rng, n_frames, 0.35 / max(n_frames, 1)), 0.0, 1.0)
    tilt = np.radians(_smooth_curve(rng, n_frames, 5.0))
    rot = np.radians(_smooth_curve(rng, n_frames, 4.0))
    drift = _smooth_curve(rng, n_frames, 0.6)
    offsets = {"right": -0.45, "mid": 0.0, "left": 0.45, "low": -0.45, "high": 0.45}
    frac = offsets[where]
    x_hat, y_hat, z_hat = np.eye(3)
    planes = []
    for k in range(n_frames):
        s = -0.95 + 1.9 * t[k]
        if kind == "tr":
            origin = np.array([uc[0] + frac * cav[0] + drift[k], uc[1] + s * cav[1], 0.0])
            u, d, motion = x_hat, z_hat, y_hat
            toward_mid = -np.sign(frac) * math.radians(12.0)
        else:
            origin = np.array([uc[0] + s * cav[0], uc[1] + frac * cav[1] + drift[k], 0.0])
            u, d, motion = -y_hat, z_hat, x_hat
            toward_mid = 0.0
        # Tilt about the image's lateral axis (fan leans along the motion), roll towards the midline, and a
        # small rotation of the probe about the depth axis.
        d1 = _rotate(d, u, tilt[k])
        u1, d1 = _rotate(u, motion, toward_mid), _rotate(d1, motion, toward_mid)
        u1 = _rotate(u1, d1, rot[k])
        planes.append(Plane(origin, u1 / np.linalg.norm(u1), d1 / np.linalg.norm(d1)))
    return planes
