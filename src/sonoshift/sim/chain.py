"""The imaging chain of one profile: from tissue labels and scatterers to a displayed image.

Polar stage (depth x angle): backscatter amplitude per tissue (echogenicity x scatterer density) plus specular
reflection at impedance steps -> PSF -> round-trip attenuation (dB/cm/MHz x f x depth, bone shadows) -> receiver
noise -> time-gain compensation -> envelope. Then log compression to the dynamic range, scan conversion, and the
profile's post-processing (speckle reduction, edge enhancement, grey map, display noise) on the output image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from sonoshift.sim import tissues
from sonoshift.sim.profiles import Chain, Profile
from sonoshift.sim.psf import apply_psf, psf_filter
from sonoshift.sim.scan_convert import View, scan_convert


@dataclass(frozen=True, eq=False)
class AcousticSlice:
    """What every profile's chain shares for one slice in one geometry (all (n_r, n_t)).

    diffuse: complex64 diffuse backscatter (echogenicity x scatterers x texture); reflect: float32 pressure
    reflection coefficient at impedance steps along depth; loss_db_per_mhz: float32 round-trip attenuation from
    the probe face to each sample, in dB per MHz of centre frequency.
    """

    diffuse: np.ndarray
    reflect: np.ndarray
    loss_db_per_mhz: np.ndarray


def acoustic_slice(
    labels: np.ndarray, z: np.ndarray, u: np.ndarray, view: View, tex: np.ndarray | None = None
) -> AcousticSlice:
    """Acoustic maps of a polar label slice (uint8 ids) with scatterers z (complex), u (uniform) and texture.

    Diffuse amplitude = echo x z where a scatterer is present (u < density); sparse tissues are scaled by
    1/sqrt(density) so the mean intensity stays echo^2; ``tex`` (smooth, unit variance, or None) modulates echo by
    exp(texture x tex - texture^2 / 2). Reflection = |Z2 - Z1| / (Z2 + Z1) between consecutive depth samples.
    """
    amp = _AMP[labels] * (u < tissues.DENSITY[labels])
    if tex is not None:
        s = tissues.TEXTURE[labels]
        amp *= np.exp(s * (tex - 0.5 * s))
    imp = tissues.IMPEDANCE[labels]
    refl = np.zeros_like(imp)
    refl[1:] = np.abs(imp[1:] - imp[:-1]) / (imp[1:] + imp[:-1])
    per_sample = tissues.ATTENUATION_DB_CM_MHZ[labels] * np.float32(2.0 * view.dr_cm)
    loss = np.cumsum(per_sample, axis=0, dtype=np.float32)
    loss -= per_sample  # attenuation before reaching the sample
    return AcousticSlice((amp * z).astype(np.complex64), refl, loss)


_AMP = (tissues.ECHO / np.sqrt(tissues.DENSITY)).astype(np.float32)


def attenuation_db(labels: np.ndarray, view: View, center_mhz: float) -> np.ndarray:
    """Round-trip attenuation (dB, >= 0) accumulated from the probe face to each sample (n_r, n_t)."""
    per_sample = tissues.ATTENUATION_DB_CM_MHZ[labels] * (2.0 * center_mhz * view.dr_cm)
    acc = np.cumsum(per_sample, axis=0, dtype=np.float32)
    return acc - per_sample


def tgc_db(view: View, profile: Profile) -> np.ndarray:
    """Time-gain compensation (dB) per depth (n_r,): ``tgc`` x the nominal round-trip attenuation, capped at
    ``tgc_max_db`` (an obstetric preset turns the far-field sliders down: behind fluid there is little loss)."""
    c = profile.chain
    ramp = c.tgc_nominal_db_cm_mhz * 2.0 * profile.transducer.center_mhz * view.r_cm
    return (c.tgc * np.minimum(ramp, c.tgc_max_db)).astype(np.float32)


_DB_TO_LN = np.float32(np.log(10.0) / 20.0)
_NOISE_TABLE: list[np.ndarray] = []


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape``: a window, at an offset drawn from ``rng``, of a fixed table of
    2^22 normals (drawing fresh normals costs more than the rest of the chain; windows at different offsets are
    independent enough for receiver and display noise)."""
    if not _NOISE_TABLE:
        _NOISE_TABLE.append(np.random.default_rng(0x5EED).standard_normal(1 << 22, dtype=np.float32))
    table = _NOISE_TABLE[0]
    n = int(np.prod(shape))
    if n > table.size:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, table.size - n + 1))
    return table[start : start + n].reshape(shape)


def envelope_of(acs: AcousticSlice, view: View, profile: Profile, rng: np.random.Generator | None) -> np.ndarray:
    """Envelope amplitude (n_r, n_t) float32 >= 0 of a shared acoustic slice through ``profile``'s chain.

    PSF on diffuse + specular echoes, attenuation at the profile's frequency, receiver noise (from ``rng``; None
    for none), TGC. Linear scale: soft tissue at the probe face is about 1.
    """
    field = acs.diffuse
    if profile.chain.specular > 0:
        field = field + np.float32(profile.chain.specular) * acs.reflect
    echo = apply_psf(field, psf_filter(view, profile.transducer))
    echo *= np.exp(acs.loss_db_per_mhz * np.float32(-profile.transducer.center_mhz * _DB_TO_LN))
    if rng is not None and profile.chain.receiver_noise > 0:
        noise = gaussian_noise(rng, (2,) + echo.shape) * np.float32(profile.chain.receiver_noise / np.sqrt(2.0))
        echo.real += noise[0]
        echo.imag += noise[1]
    env = np.abs(echo)
    env *= np.exp(tgc_db(view, profile) * _DB_TO_LN)[:, None]
    return env


def envelope(
    labels: np.ndarray,
    z: np.ndarray,
    u: np.ndarray,
    view: View,
    profile: Profile,
    rng: np.random.Generator | None,
    tex: np.ndarray | None = None,
) -> np.ndarray:
    """Envelope amplitude (n_r, n_t) float32 >= 0 before log compression (linear, soft tissue ~ 1 at the face).

    ``rng`` draws the receiver noise (None: no noise); ``tex`` is the tissue texture field (None: homogeneous).
    """
    return envelope_of(acoustic_slice(labels, z, u, view, tex), view, profile, rng)


def log_compress(env: np.ndarray, chain: Chain) -> np.ndarray:
    """Map 20 log10(env) + gain_db from [-dynamic_range_db, 0] dB to [0, 1] (float32, clipped)."""
    db = 20.0 * np.log10(np.maximum(env, 1e-12)) + chain.gain_db
    return np.clip((db + chain.dynamic_range_db) / chain.dynamic_range_db, 0.0, 1.0).astype(np.float32)


_LUT_SIZE = 4096


@functools.lru_cache(maxsize=32)
def grey_map(chain: Chain) -> np.ndarray:
    """The display grey map as a lookup table over [0, 1] (4096 entries): black + (1 - black) x v^gamma."""
    v = np.linspace(0.0, 1.0, _LUT_SIZE, dtype=np.float64)
    return (chain.black_level + (1.0 - chain.black_level) * v**chain.gamma).astype(np.float32)


def post_process(img: np.ndarray, mask: np.ndarray, chain: Chain, rng: np.random.Generator | None) -> np.ndarray:
    """Scanner post-processing of a scan-converted [0, 1] image: speckle reduction, edge enhancement, grey map
    (gamma, black level), display noise; returns float32 in [0, 1], 0 outside ``mask``."""
    out = img
    if chain.speckle_reduction > 0:
        smooth = out
        if chain.smoothing_px > 0:
            smooth = cv2.GaussianBlur(out, (0, 0), chain.smoothing_px)
        smooth = cv2.bilateralFilter(smooth, 5, 0.12, 2.0)
        out = (1 - chain.speckle_reduction) * out + chain.speckle_reduction * smooth
    if chain.edge_enhance > 0:
        out = out + chain.edge_enhance * (out - cv2.GaussianBlur(out, (0, 0), 2.0))
    if chain.gamma != 1.0 or chain.black_level > 0:
        out = grey_map(chain)[(np.clip(out, 0.0, 1.0) * np.float32(_LUT_SIZE - 1) + np.float32(0.5)).astype(np.int32)]
    if rng is not None and chain.display_noise > 0:
        out = out + np.float32(chain.display_noise) * gaussian_noise(rng, out.shape)
    out = np.clip(out, 0.0, 1.0)
    out[~mask] = 0.0
    return out.astype(np.float32)


def render_acoustic(acs: AcousticSlice, view: View, profile: Profile, rng: np.random.Generator | None) -> np.ndarray:
    """The displayed fan image (S, S) uint8 of a shared acoustic slice through ``profile``'s chain in ``view``.

    ``rng`` draws all noise of this rendering (receiver then display); None renders noise-free.
    """
    env = envelope_of(acs, view, profile, rng)
    img = scan_convert(log_compress(env, profile.chain), view)
    img = post_process(img, view.mask, profile.chain, rng)
    return (img * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def render(
    labels: np.ndarray,
    z: np.ndarray,
    u: np.ndarray,
    view: View,
    profile: Profile,
    rng: np.random.Generator | None,
    tex: np.ndarray | None = None,
) -> np.ndarray:
    """``render_acoustic`` of the slice given by polar labels, scatterers (z, u) and texture ``tex``."""
    return render_acoustic(acoustic_slice(labels, z, u, view, tex), view, profile, rng)
