"""Distribution-level realism: FID and KID between feature sets with bootstrap confidence intervals.

Both sets are resampled with replacement (same sizes) ``n_boot`` times with an explicit generator; the interval
is the 2.5th-97.5th percentile of the resampled values. Resampling with replacement repeats images, which biases
KID slightly upwards inside the interval; the point value is computed on the sets themselves.
"""

from __future__ import annotations

import torch

from sonoshift.metrics.fid import fid_from_features, kid_from_features


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


__all__ = ["fid_kid_bootstrap"]
