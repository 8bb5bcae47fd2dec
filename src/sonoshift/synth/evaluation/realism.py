"""Distribution-level realism: FID and KID between feature sets with bootstrap confidence intervals.

Both sets are resampled with replacement (same sizes) ``n_boot`` times with an explicit generator; the interval
is the 2.5th-97.5th percentile of the resampled values. Resampling with replacement repeats images, which biases
KID slightly upwards inside the interval; the point value is computed on the sets themselves.

Feature spaces: the judges' ultrasound-domain embedding always (``evaluate.py``), and ImageNet AlexNet features
(:func:`alexnet_features`) when the LPIPS-alex weights load; Inception-v3 weights are not read (its FID numbers
would need the exact TF-ported network), so neither row is comparable to published Inception-FID values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sonoshift.metrics.fid import extract_features, fid_from_features, kid_from_features


def _kid(fa: torch.Tensor, fb: torch.Tensor) -> float:
    n = max(fa.shape[0], fb.shape[0])
    return kid_from_features(fa, fb, subset_size=n)[0]  # one subset = all rows: the unbiased MMD^2 estimate


def fid_kid_bootstrap(
    fa: torch.Tensor, fb: torch.Tensor, *, n_boot: int = 200, generator: torch.Generator | None = None,
) -> dict[str, float]:
    """FID and KID of features (N, D) vs (M, D) with 95% bootstrap intervals ->
    {fid, fid_lo, fid_hi, kid, kid_lo, kid_hi, n_a, n_b}."""
    g = generator or torch.Generator().manual_seed(0)
    fa, fb = fa.double(), fb.double()
    fids, kids = [], []
    for _ in range(n_boot):
        ia = torch.randint(0, fa.shape[0], (fa.shape[0],), generator=g)
        ib = torch.randint(0, fb.shape[0], (fb.shape[0],), generator=g)
        fids.append(fid_from_features(fa[ia], fb[ib]))
        kids.append(_kid(fa[ia], fb[ib]))
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    fl, fh = torch.quantile(torch.tensor(fids, dtype=torch.float64), q).tolist()
    kl, kh = torch.quantile(torch.tensor(kids, dtype=torch.float64), q).tolist()
    return {"fid": fid_from_features(fa, fb), "fid_lo": fl, "fid_hi": fh, "kid": _kid(fa, fb), "kid_lo": kl,
            "kid_hi": kh, "n_a": int(fa.shape[0]), "n_b": int(fb.shape[0])}


class AlexNetPooled(torch.nn.Module):
    """Images (N, 1, H, W) in [0, 1] -> (N, 256): resized to ``size`` (bilinear), mapped to LPIPS's input space
    (grey repeated to RGB, ImageNet shift and scale), the ReLU after conv5 of ``lpips_module``'s AlexNet backbone
    averaged over space."""

    def __init__(self, lpips_module, size: int = 224) -> None:
        super().__init__()
        self.backbone, self.size = lpips_module.backbone, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from sonoshift.metrics.lpips import to_lpips_input

        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.backbone(to_lpips_input(x))[-1].mean(dim=(2, 3))


def alexnet_features(lpips_module, x: torch.Tensor, *, size: int = 224, batch: int = 64) -> torch.Tensor:
    """Images (N, 1, H, W) in [-1, 1] -> (N, 256) float64 ImageNet AlexNet features (:class:`AlexNetPooled`);
    ``lpips_module`` is a loaded :class:`~sonoshift.metrics.lpips.LPIPS` ("alex")."""
    return extract_features((x.float().clamp(-1, 1) + 1) / 2, AlexNetPooled(lpips_module, size), batch)


__all__ = ["AlexNetPooled", "alexnet_features", "fid_kid_bootstrap"]
