"""Sampling wrappers for stochastic translators: the mean of K samples per frame and its per-pixel std map
(what `harmonize --samples K` writes). Generic: it asks the translator (``stochastic``, ``uncertainty``), never
which method made it."""

from __future__ import annotations

import numpy as np
import torch

from sonoshift.errors import SonoshiftError
from sonoshift.methods.kinds import Translator


class MeanOfSamples:
    """Wraps a stochastic translator (``translator.stochastic``; its ``uncertainty(x, k, generator)`` draws K).

    Each call returns the mean of ``k`` samples, and appends that batch's per-pixel std map (CPU, (B, 1, H, W),
    [-1, 1] intensity units) to ``std_maps``, in call order; the translator attributes are passed through.
    """

    def __init__(self, translator: Translator, k: int) -> None:
        if not translator.stochastic:
            raise SonoshiftError(f"--samples needs a stochastic model; '{translator.method}' is deterministic.")
        if k < 1:
            raise SonoshiftError(f"the number of samples per frame must be at least 1, got {k}.")
        self.translator, self.k = translator, k
        self.method, self.image_size = translator.method, translator.image_size
        self.source_domain, self.target_domain = translator.source_domain, translator.target_domain
        self.std_maps: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, std = self.translator.uncertainty(x, self.k, generator)
        self.std_maps.append(std.float().cpu())
        return mean

    stochastic = False  # the mean of K samples is what this wrapper returns; it is not sampled again

    def uncertainty(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None):
        raise SonoshiftError("the mean of K samples cannot be sampled again.")

    def stacked(self) -> np.ndarray | None:
        """All recorded std maps as one uint8 array (N, H, W): the std in 8-bit grey levels of the output."""
        return uncertainty_to_uint8(torch.cat(self.std_maps)) if self.std_maps else None


def uncertainty_to_uint8(std: torch.Tensor) -> np.ndarray:
    """Std maps (N, 1, H, W) in [-1, 1] units -> uint8 (N, H, W): the std in grey levels of a 0..255 image
    (std * 127.5, rounded; it cannot exceed 128 for outputs in [-1, 1])."""
    return (std[:, 0].float() * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


__all__ = ["MeanOfSamples", "uncertainty_to_uint8"]
