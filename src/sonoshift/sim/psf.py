"""Point-spread function in (depth, angle) coordinates, applied as Gaussian filters in the Fourier domain.

The pulse-echo PSF is separable: a Gaussian of fixed axial FWHM along depth, and along the angle a Gaussian whose
lateral FWHM (cm) widens away from the focus, w(r) = w0 sqrt(1 + ((r - focus) / dof)^2), converted to angle
samples at each depth. Filters are normalized to keep the variance of white input, so a region of unit-variance
scatterers keeps unit mean intensity whatever the profile.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from sonoshift.sim.profiles import Transducer
from sonoshift.sim.scan_convert import View

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def psf_sigmas(view: View, transducer: Transducer) -> tuple[float, np.ndarray]:
    """Gaussian sigmas in samples: axial (scalar, depth samples) and lateral per depth (n_r,) in angle samples."""
    sigma_r = transducer.axial_fwhm_mm / 10.0 / FWHM_PER_SIGMA / view.dr_cm
    r = view.r_cm
    defocus = (r - transducer.focus_cm) / transducer.depth_of_field_cm
    width_cm = transducer.lateral_fwhm_mm / 10.0 * np.sqrt(1.0 + defocus**2)
    arc_cm = (view.geometry.radius_cm + r) * view.dtheta
    sigma_t = width_cm / FWHM_PER_SIGMA / np.maximum(arc_cm, 1e-6)
    return float(sigma_r), sigma_t.astype(np.float64)


def _gaussian_transfer(freq: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    """exp(-2 pi^2 sigma^2 f^2), scaled so that white noise keeps its variance (Parseval)."""
    h = np.exp(-2.0 * math.pi**2 * np.square(sigma) * np.square(freq))
    norm = np.sqrt(np.mean(h * h, axis=-1, keepdims=True))
    return h / norm


@dataclass(frozen=True, eq=False)
class PSFFilter:
    """A profile's PSF on one polar grid: zero-padding (rows, cols), padded FFT shape, and the axial (rows, 1) and
    per-row lateral (padded rows, cols) Gaussian transfer functions."""

    pads: tuple[int, int]
    shape: tuple[int, int]
    h_r: np.ndarray
    h_t: np.ndarray


@functools.lru_cache(maxsize=64)
def psf_filter(view: View, transducer: Transducer) -> PSFFilter:
    """The PSF filter of ``transducer`` on ``view``'s polar grid (cached: a profile pays for it once)."""
    sigma_r, sigma_t = psf_sigmas(view, transducer)
    n_r, n_t = view.X.shape
    pr = int(math.ceil(3 * sigma_r)) + 1
    pt = min(int(math.ceil(3 * float(np.max(sigma_t)))) + 1, 2 * n_t)
    shape = (scipy.fft.next_fast_len(n_r + 2 * pr), scipy.fft.next_fast_len(n_t + 2 * pt))
    sig_t = np.concatenate([np.full(pr, sigma_t[0]), sigma_t, np.full(pr, sigma_t[-1])])[:, None]
    h_t = _gaussian_transfer(scipy.fft.fftfreq(shape[1])[None, :], sig_t).astype(np.float32)[pr : pr + n_r]
    h_r = _gaussian_transfer(scipy.fft.fftfreq(shape[0]), sigma_r).astype(np.float32)[:, None]
    return PSFFilter((pr, pt), shape, h_r, h_t)


def apply_psf(field: np.ndarray, filt: PSFFilter) -> np.ndarray:
    """Filter a complex (n_r, n_t) field with the PSF (axial, then per-depth lateral Gaussian); same shape.

    Edges are zero-padded by three sigmas so that the circular FFT does not wrap speckle across the fan.
    """
    n_r, n_t = field.shape
    pr, pt = filt.pads
    padded = np.zeros(filt.shape, dtype=np.complex64)
    padded[pr : pr + n_r, pt : pt + n_t] = field
    # Lateral pass only on the rows that hold data (the padding rows stay zero), then the axial pass.
    rows = padded[pr : pr + n_r]
    spec = scipy.fft.fft(rows, axis=1)
    spec *= filt.h_t
    padded[pr : pr + n_r] = scipy.fft.ifft(spec, axis=1)
    spec = scipy.fft.fft(padded, axis=0)
    spec *= filt.h_r
    out = scipy.fft.ifft(spec, axis=0)
    return out[pr : pr + n_r, pt : pt + n_t]
