"""FID and KID on the features of a pluggable extractor (any torch module mapping images to feature vectors).

FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) on Gaussian fits of two feature sets (population
covariances, float64). KID = unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
random subsets. The default extractor needs no download: a fixed, seeded, randomly initialized conv net. Its
numbers only compare runs scored with the same extractor; they are NOT comparable to Inception-FID, and every
output carries ``extractor_label`` saying so.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sonoshift.errors import SonoshiftError

DEFAULT_EXTRACTOR_SEED = 20240607
DEFAULT_EXTRACTOR_LABEL = "random-conv-v1 features (seeded random init; not comparable to Inception-FID)"


class RandomConvFeatures(nn.Module):
    """A fixed random conv net: (B, 1, H, W) in [0, 1] -> (B, 4 * width) features (mean+std pooled, two scales).

    Weights come from ``seed`` through an explicit generator, so every machine gets the same extractor.
    """

    def __init__(self, width: int = 32, seed: int = DEFAULT_EXTRACTOR_SEED) -> None:
        super().__init__()
        self.net1 = nn.Sequential(
            nn.Conv2d(1, width, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.net2 = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )  # fmt: skip
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() > 1:  # He-normal conv weights; biases zero
                    p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
                else:
                    p.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = x * 2 - 1
        h1 = self.net1(x)
        h2 = self.net2(h1)
        pooled = [torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3))], 1) for h in (h1, h2)]
        return torch.cat(pooled, 1)


def default_extractor() -> tuple[nn.Module, str]:
    """The download-free default extractor and its label (which says it is not comparable to Inception-FID)."""
    return RandomConvFeatures(), DEFAULT_EXTRACTOR_LABEL


@torch.no_grad()
def extract_features(
    images: torch.Tensor | Iterable[torch.Tensor], extractor: nn.Module, batch_size: int = 64
) -> torch.Tensor:
    """Features (N, D) float64 on CPU of images in [0, 1] ((N, 1, H, W) / (N, H, W), or an iterable of batches),
    computed ``batch_size`` at a time on the extractor's device."""
    params = list(extractor.parameters())
    device = params[0].device if params else torch.device("cpu")
    batches = [images] if isinstance(images, torch.Tensor) else images
    out = []
    for batch in batches:
        for i in range(0, batch.shape[0], batch_size):
            f = extractor(batch[i : i + batch_size].to(device).float())
            out.append(f.reshape(f.shape[0], -1).double().cpu())
    if not out:
        raise SonoshiftError("no images were given to the feature extractor.")
    return torch.cat(out)


def _gaussian(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = f.mean(0)
    x = f - mu
    return mu, x.T @ x / f.shape[0]


def _sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def fid_from_features(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits (population covariance) of features (N, D) and (M, D) -> float >= 0.

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2), a
    symmetric PSD matrix with the same spectrum, which avoids the complex round-off of a general sqrtm.
    """
    if fa.dim() != 2 or fb.dim() != 2 or fa.shape[1] != fb.shape[1]:
        raise SonoshiftError(f"feature sets must be (N, D) and (M, D), got {tuple(fa.shape)} and {tuple(fb.shape)}.")
    if fa.shape[0] < 2 or fb.shape[0] < 2:
        raise SonoshiftError("FID needs at least 2 images in each set.")
    mu_a, s_a = _gaussian(fa.double())
    mu_b, s_b = _gaussian(fb.double())
    ra = _sqrt_psd(s_a)
    m = ra @ s_b @ ra
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * tr_sqrt
    return float(value.clamp_min(0))


def _poly_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid_from_features(
    fa: torch.Tensor,
    fb: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """KID (mean, std over subsets) of features (N, D) and (M, D): unbiased polynomial-kernel MMD^2.

    When both sets have at most ``subset_size`` rows, one subset = all rows is used (deterministic, std 0);
    otherwise ``subsets`` random subsets of min(subset_size, N, M) rows are drawn with ``generator``.
    """
    fa, fb = fa.double(), fb.double()
    if fa.shape[0] < 2 or fb.shape[0] < 2:
        raise SonoshiftError("KID needs at least 2 images in each set.")
    if fa.shape[0] <= subset_size and fb.shape[0] <= subset_size:
        return float(_poly_mmd2(fa, fb)), 0.0
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    k = min(subset_size, fa.shape[0], fb.shape[0])
    vals = []
    for _ in range(subsets):
        ia = torch.randperm(fa.shape[0], generator=generator)[:k]
        ib = torch.randperm(fb.shape[0], generator=generator)[:k]
        vals.append(_poly_mmd2(fa[ia], fb[ib]))
    v = torch.stack(vals)
    return float(v.mean()), float(v.std(unbiased=False))


def fid_kid(
    images_a: torch.Tensor | Iterable[torch.Tensor],
    images_b: torch.Tensor | Iterable[torch.Tensor],
    extractor: nn.Module | None = None,
    label: str | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float | str]:
    """FID and KID between two image sets in [0, 1] -> {"fid", "kid", "kid_std", "extractor_label", "n_a", "n_b"}.

    ``extractor`` defaults to the download-free ``RandomConvFeatures``; pass ``label`` to name your own.
    """
    if extractor is None:
        extractor, default_label = default_extractor()
        label = label or default_label
    label = label or f"{type(extractor).__name__} features (not comparable to Inception-FID)"
    fa = extract_features(images_a, extractor)
    fb = extract_features(images_b, extractor)
    kid, kid_std = kid_from_features(fa, fb, generator=generator)
    return {
        "fid": fid_from_features(fa, fb),
        "kid": kid,
        "kid_std": kid_std,
        "extractor_label": label,
        "n_a": int(fa.shape[0]),
        "n_b": int(fb.shape[0]),
    }
