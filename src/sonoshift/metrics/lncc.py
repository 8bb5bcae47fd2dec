"""Local normalized cross-correlation (LNCC) over K x K box windows (K = 9 by default), signed.

Per window: (cov + eps) / sqrt((var_a + eps) (var_b + eps)) with population statistics and eps = 1e-5. It stays
in [-1, 1] (Cauchy-Schwarz), identical windows score exactly 1 (flat ones too), and a flat window against a textured
one scores sqrt(eps / (var + eps)), about 0. The value is the mean over all valid windows (those wholly inside the
image: (H - K + 1) x (W - K + 1) of them). With a mask, windows use only in-mask pixels and only windows whose
anchor pixel is inside the mask are averaged (NaN when there is none). The anchor of the window over rows
i .. i + K - 1 and columns j .. j + K - 1 is pixel (i + r, j + r), r = (K - 1) // 2: its centre for odd K, the
upper-left pixel of its central 2 x 2 block for even K (``windows.crop_center``). Any K >= 1 works.
"""

from __future__ import annotations

import torch

from sonoshift.errors import SonoshiftError
from sonoshift.metrics._inputs import prepare_pair
from sonoshift.metrics.windows import crop_center, masked_mean, window_moments

LNCC_EPS = 1e-5


def lncc_from_moments(va: torch.Tensor, vb: torch.Tensor, cov: torch.Tensor, eps: float = LNCC_EPS) -> torch.Tensor:
    """Per-window LNCC from windowed variances and covariance -> same shape, in [-1, 1]."""
    return (cov + eps).div_((va.clamp_min(0).add_(eps)).mul_(vb.clamp_min(0).add_(eps)).sqrt_())


def lncc_map(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, window: int = 9, eps: float = LNCC_EPS
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-window LNCC map (B, H - window + 1, W - window + 1), in [-1, 1], and the mask at the window anchors
    (same shape, bool) or None. a, b: (B, 1, H, W) or (B, H, W) in [0, 1]; mask: optional bool, same spatial shape;
    window: box side in pixels, any integer from 1 to min(H, W)."""
    if isinstance(window, bool) or not isinstance(window, int):
        raise SonoshiftError(f"the LNCC window must be a whole number of pixels, got {window!r}.")
    a, b, mask = prepare_pair(a, b, mask)
    _, _, va, vb, cov = window_moments(a, b, window, mask)
    return lncc_from_moments(va, vb, cov, eps), (None if mask is None else crop_center(mask, window))


def lncc(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, window: int = 9, eps: float = LNCC_EPS
) -> torch.Tensor:
    """Mean local normalized cross-correlation per pair -> (B,), in [-1, 1]; 1 for identical images.

    Inputs as ``lncc_map``; with a mask, the mean over windows anchored inside it (NaN when there is none)."""
    m, cmask = lncc_map(a, b, mask, window, eps)
    return masked_mean(m, cmask)
