"""Scanner profiles: fan geometry, transducer PSF, imaging chain and overlay style, loaded from YAML.

Built-in profiles live in ``sim/profiles/<name>.yaml``; a user adds a device by writing one more YAML file and
passing its path instead of a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from sonoshift.config import AnyFloat, NonNegFloat, PosFloat, Range, UnitFloat, Validated, load_config
from sonoshift.errors import SonoshiftError

PROFILE_DIR = Path(__file__).with_name("profiles")


@dataclass(frozen=True)
class Geometry(Validated):
    """Fan of a curvilinear (or, with a tiny radius, phased) array.

    radius_cm: probe face radius (cm); half_angle_deg: half opening angle (degrees); depth_cm: imaging depth (cm).
    """

    radius_cm: NonNegFloat = 4.0
    half_angle_deg: Annotated[float, Range(0, 90, lo_open=True, hi_open=True)] = 35.0
    depth_cm: PosFloat = 16.0


@dataclass(frozen=True)
class Transducer(Validated):
    """Pulse-echo PSF: centre frequency (MHz), axial FWHM (mm), lateral FWHM at the focus (mm), focal depth (cm),
    and the distance from the focus (cm) at which the beam is sqrt(2) times wider."""

    center_mhz: PosFloat = 3.5
    axial_fwhm_mm: PosFloat = 0.9
    lateral_fwhm_mm: PosFloat = 2.6
    focus_cm: PosFloat = 8.0
    depth_of_field_cm: PosFloat = 4.0


@dataclass(frozen=True)
class Chain(Validated):
    """Imaging chain settings (see chain.py): TGC, gain (dB), dynamic range (dB), noise, post-processing."""

    tgc: NonNegFloat = 1.0  # fraction of the nominal attenuation that time-gain compensation removes (0 = no TGC)
    tgc_nominal_db_cm_mhz: NonNegFloat = 0.5
    tgc_max_db: NonNegFloat = 35.0  # cap of the TGC curve (dB)
    gain_db: AnyFloat = -20.0
    dynamic_range_db: PosFloat = 50.0
    receiver_noise: NonNegFloat = 3e-4  # rms of complex receiver noise, relative to soft-tissue echo at the transducer
    specular: NonNegFloat = 25.0  # amplitude of specular reflection per unit reflection coefficient
    speckle_reduction: UnitFloat = 0.0  # 0-1 blend with an edge-preserving (bilateral) filter
    smoothing_px: NonNegFloat = 0.0  # sigma (output px) of the spatial smoothing inside speckle reduction
    edge_enhance: NonNegFloat = 0.0  # unsharp-mask amount
    gamma: PosFloat = 1.0  # display grey map exponent
    black_level: UnitFloat = 0.0  # grey level (0-1) that echo-free regions display as (lifted blacks, haze)
    display_noise: NonNegFloat = 0.0  # rms of additive noise on the displayed [0, 1] image


@dataclass(frozen=True)
class Overlay(Validated):
    """Burned-in annotation style: vendor and model text, logo shape, text grey level (0-255)."""

    vendor: str = "SONO"
    model: str = "H1"
    logo: Literal["circle", "diamond", "bars"] = "circle"
    text_level: Annotated[int, Range(0, 255)] = 200


@dataclass(frozen=True)
class Profile(Validated):
    """One scanner. ``name`` is the domain name written into the dataset spec."""

    name: str = "handheld"
    description: str = ""
    geometry: Geometry = field(default_factory=Geometry)
    transducer: Transducer = field(default_factory=Transducer)
    chain: Chain = field(default_factory=Chain)
    overlay: Overlay = field(default_factory=Overlay)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with sonoshift (sorted)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name (``handheld``, ``cart``, ``phased``) or a profile YAML by path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = PROFILE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise SonoshiftError(
                f"scanner profile '{text}' is neither a YAML file nor a built-in profile "
                f"({', '.join(builtin_profiles())})."
            )
    profile = load_config(Profile, path)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", profile.name):
        raise SonoshiftError(f"profile file {path}: 'name' must be letters, digits and '-' only, got {profile.name!r}.")
    g = profile.geometry
    if not (0 < g.half_angle_deg < 80 and g.depth_cm > 1 and g.radius_cm >= 0):
        raise SonoshiftError(
            f"profile file {path}: geometry needs 0 < half_angle_deg < 80, depth_cm > 1 and radius_cm >= 0."
        )
    if profile.chain.dynamic_range_db <= 0 or profile.transducer.center_mhz <= 0:
        raise SonoshiftError(f"profile file {path}: dynamic_range_db and center_mhz must be positive.")
    return profile
