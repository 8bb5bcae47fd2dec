"""Perceptual distances for synthesis, lower = more similar.

- LPIPS (AlexNet, ImageNet weights + LPIPS v0.1 heads) when the weight files are present (never downloaded);
- always the *ultrasound-embedding perceptual distance* (``us_perceptual``): LPIPS's formula on the judges'
  conv feature maps with uniform layer weights, d(a, b) = mean_l mean_{h,w} ||n_l(a) - n_l(b)||^2 with n_l the
  channel-normalised l-th map. It is NOT ImageNet-LPIPS and is named differently everywhere.
"""

from __future__ import annotations

import torch

from sonoshift.metrics.lpips import normalize_channels


@torch.no_grad()
def us_perceptual(judges, a: torch.Tensor, b: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Per-pair distance (N,) between images a, b (N, 1, H, W) in [-1, 1] on the judges' feature maps."""
    out = []
    for i in range(0, a.shape[0], batch):
        fa, fb = judges.feature_maps(a[i:i + batch]), judges.feature_maps(b[i:i + batch])
        d = [(normalize_channels(x) - normalize_channels(y)).pow(2).sum(1).mean(dim=(1, 2)) for x, y in zip(fa, fb)]
        out.append(torch.stack(d).mean(0))
    return torch.cat(out).double()


def try_lpips(weights: str | None = None):
    """(LPIPS-alex module, "") when its weights load, else (None, the reason)."""
    from sonoshift.errors import SonoshiftError
    from sonoshift.metrics.lpips import load_lpips

    try:
        return load_lpips("alex", weights), ""
    except SonoshiftError as e:
        return None, str(e)


__all__ = ["try_lpips", "us_perceptual"]
