"""A translator followed by the Gaussian blur that maximizes its PSNR on the validation split.

PSNR rewards smoothing: an image blurred to the conditional mean scores higher than a sharp, realistic one. A
learned refiner that only gains PSNR might just be blurring; the blurred CycleGAN is the cheap trick it has to
beat (and the texture check, ``sonoshift.metrics.spectrum``, shows what the blur costs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sonoshift.errors import SonoshiftError
from sonoshift.methods.kinds import TranslatorBase

SIGMAS: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, 1, H, W) blurred by a Gaussian of std ``sigma`` px (taps to 3 sigma, reflect padding); 0 = copy."""
    if sigma <= 0:
        return x
    r = max(int(3.0 * sigma + 0.5), 1)
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (k / sigma) ** 2)
    taps = (taps / taps.sum()).to(x.dtype).to(x.device)
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, taps.view(1, 1, 1, -1))
    return F.conv2d(y, taps.view(1, 1, -1, 1))


class Blurred(TranslatorBase):
    """``inner`` translator, then :func:`gaussian_blur` with ``sigma``; the translator interface of ``inner``."""

    def __init__(self, inner: Any, sigma: float, name: str = "cyclegan_blur") -> None:
        self.inner, self.sigma, self.method = inner, float(sigma), name
        self.image_size = inner.image_size
        self.source_domain, self.target_domain = inner.source_domain, inner.target_domain

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return gaussian_blur(self.inner(x), self.sigma).clamp(-1, 1)


def choose_sigma(
    inner: Any, data: str | Path, *, split: str = "val", sigmas: tuple[float, ...] = SIGMAS, max_frames: int = 128,
    batch_size: int = 32,
) -> tuple[float, dict[float, float]]:
    """The sigma in ``sigmas`` with the best mean PSNR against the ground truth on ``split`` (evenly subsampled
    to ``max_frames`` source frames of the packed cache). Returns (sigma, {sigma: mean PSNR dB})."""
    from sonoshift.metrics import psnr

    cache = Path(data) / "cache" / split
    src, gt = cache / f"{inner.source_domain}.npy", cache / f"{inner.source_domain}.gt_{inner.target_domain}.npy"
    if not src.is_file() or not gt.is_file():
        raise SonoshiftError(f"choosing the blur needs source frames and ground truth in {cache} ({gt.name} missing).")
    frames, truth = np.load(src, mmap_mode="r"), np.load(gt, mmap_mode="r")
    idx = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int)
    x = torch.from_numpy(np.asarray(frames[idx], dtype=np.float32) / 127.5 - 1)[:, None]
    t = torch.from_numpy(np.asarray(truth[idx], dtype=np.float32) / 255.0)[:, None]
    with torch.no_grad():
        y = torch.cat([inner(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    scores = {s: float(psnr((gaussian_blur(y, s).clamp(-1, 1) + 1) / 2, t).mean()) for s in sigmas}
    return max(scores, key=scores.get), scores  # type: ignore[arg-type]
