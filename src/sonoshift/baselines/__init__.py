"""Baselines that need no (or no new) learning, as translators usable wherever methods are (harmonize, study):
``histogram_match`` (each source frame's histogram mapped onto the target domain's), ``depth_affine`` (one linear
grey map per image row, the diffusion translators' anchor alone) and ``cyclegan_blur`` (the trained CycleGAN
followed by the Gaussian blur that is best on the validation split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sonoshift.baselines.blur import Blurred, choose_sigma, gaussian_blur
from sonoshift.baselines.histogram_match import HistogramMatch, fit_histogram_match, load_histogram_match
from sonoshift.errors import SonoshiftError

BASELINES: tuple[str, ...] = ("histogram_match", "depth_affine", "cyclegan_blur")
NEEDS: dict[str, tuple[str, ...]] = {"cyclegan_blur": ("cyclegan",)}  # baseline -> trained methods it uses


def applicable(name: str, data: str | Path, source: str, target: str, methods: tuple[str, ...]) -> bool:
    """Whether baseline ``name`` can run on ``data``: cyclegan_blur needs a trained CycleGAN among ``methods``
    and validation ground truth to choose its blur (simulated data; real data has none)."""
    if name != "cyclegan_blur":
        return True
    return set(NEEDS[name]) <= set(methods) and (Path(data) / "cache" / "val" / f"{source}.gt_{target}.npy").is_file()


def make_baseline(name: str, data: str | Path, source: str, target: str, models: str | Path) -> tuple[Any, str]:
    """The baseline ``name`` fitted on the prepared dataset ``data`` -> (translator, one-line description).
    ``models``: the folder holding the trained ``cyclegan`` run (for ``cyclegan_blur``)."""
    if name == "histogram_match":
        return fit_histogram_match(data, source, target), "histogram matching to the target training frames"
    if name == "depth_affine":
        from sonoshift.baselines.depth_affine import fit_depth_affine
        from sonoshift.methods.anchor import keeps_moments

        tr = fit_depth_affine(data, source, target)
        desc = "depth-wise linear grey map (the diffusion anchor without its despeckle)"
        if keeps_moments(tr.net):
            desc += ("; the identity here: the domains' training grey levels differ no more than halves of one "
                     "domain's patients (methods.anchor_guard)")
        return tr, desc
    if name == "cyclegan_blur":
        from sonoshift.methods import load_translator

        inner = load_translator(Path(models) / "cyclegan")
        sigma, _ = choose_sigma(inner, data)
        return Blurred(inner, sigma), f"CycleGAN + Gaussian blur sigma {sigma:g} px (best on val)"
    raise SonoshiftError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)}).")


__all__ = [
    "BASELINES", "Blurred", "applicable", "HistogramMatch", "choose_sigma", "fit_histogram_match", "gaussian_blur",
    "load_histogram_match", "make_baseline",
]
