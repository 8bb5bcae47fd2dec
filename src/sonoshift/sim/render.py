"""Render one frame (one probe plane) for several scanner profiles, sharing the slice and the scatterers.

For each distinct fan geometry the phantom is sliced once and the scatterers sampled once; every profile's chain
then renders that same slice. The image of profile q in the geometry of profile p is the ground truth for
translating p's video to q; with p = q it is p's own frame.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from sonoshift.sim.chain import AcousticSlice, acoustic_slice, render_acoustic
from sonoshift.sim.phantom import Phantom
from sonoshift.sim.primitives import Plane
from sonoshift.sim.profiles import Profile
from sonoshift.sim.scan_convert import View, polar_blocks, scan_convert
from sonoshift.sim.speckle import ScattererBank, scatterers, texture


@dataclass(frozen=True)
class FrameKey:
    """Identity of one frame: run seed, patient index, sweep index, frame index (all ints >= 0)."""

    seed: int
    patient: int
    sweep: int
    frame: int

    def noise_rng(self, profile_name: str) -> np.random.Generator:
        """The generator of all noise that ``profile_name``'s chain adds to this frame (any geometry)."""
        tag = zlib.crc32(profile_name.encode("utf-8"))
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.patient, self.sweep, self.frame, tag]))


@dataclass(frozen=True)
class GeometrySlice:
    """Polar labels (n_r, n_t) uint8, scatterers z (complex64) and u (float32), tissue texture (float32), the
    acoustic maps every profile shares, and the Cartesian label map (S, S) uint8."""

    labels: np.ndarray
    z: np.ndarray
    u: np.ndarray
    tex: np.ndarray
    acoustic: AcousticSlice
    label_map: np.ndarray


def slice_view(
    phantom: Phantom, plane: Plane, view: View, bank: ScattererBank, scatter_key: int, spacing_cm: float
) -> GeometrySlice:
    """Slice ``phantom`` on ``plane`` in ``view``'s polar grid and sample the plane's scatterers there.

    ``scatter_key`` (int >= 0) picks the frame's scatterers in ``bank``; ``spacing_cm`` is their grid spacing.
    """
    labels = phantom.slice(plane, view.X, view.Y, block=lambda boxes: polar_blocks(view, boxes))
    z, u = scatterers(bank, view.X, view.Y, scatter_key, spacing_cm)
    tex = texture(bank, view.X, view.Y, scatter_key)
    acs = acoustic_slice(labels, z, u, view, tex)
    return GeometrySlice(labels, z, u, tex, acs, scan_convert(labels, view, nearest=True))


def render_slice(sl: GeometrySlice, view: View, profile: Profile, key: FrameKey) -> np.ndarray:
    """``profile``'s displayed image (S, S) uint8 of the slice, with the frame's noise for that profile."""
    return render_acoustic(sl.acoustic, view, profile, key.noise_rng(profile.name))
