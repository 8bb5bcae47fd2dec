"""The depth-dependent linear grey map alone, as a no-learning baseline: the anchor the DDGAN and the cascade
start from (``anchor: depth_affine``, ``sonoshift.methods.anchor.AffineMatch``), fitted on the training split of
both domains. A trained translator that does not beat it on a metric adds nothing on that metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor import AffineMatch, fit_affine_prepared
from sonoshift.methods.kinds import TranslatorBase


@dataclass(frozen=True, eq=False)
class DepthAffine(TranslatorBase):
    """A translator (B,1,H,W) in [-1,1] -> same: each row's grey levels mapped linearly onto the target domain's."""

    net: AffineMatch
    source_domain: str
    target_domain: str
    image_size: tuple[int, int]
    method: str = "depth_affine"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"translator input must be (B,1,H,W), got {tuple(x.shape)}.")
        with torch.no_grad():
            return self.net(x)


def fit_depth_affine(data: str | Path, source: str, target: str, *, split: str = "train") -> DepthAffine:
    """Fit on the ``split`` frames (and field-of-view masks) of both domains of the prepared dataset ``data``."""
    from sonoshift.data.cache import load_cache

    net = fit_affine_prepared(data, split, source, target, depth=True)
    size = tuple(int(s) for s in load_cache(data, split, target).shape[-2:])
    return DepthAffine(net, source, target, size)  # type: ignore[arg-type]
