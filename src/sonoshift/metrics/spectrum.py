"""Texture check: the radially averaged power spectrum of an image, and the distance between two log spectra.

An L1-trained or blurred translator gains PSNR by removing speckle; its spectrum then falls below the ground
truth's at high frequencies. ``spectrum_distance`` measures that, one value per image pair.

Definitions (images in [0, 1], (B, H, W) or (B, 1, H, W), square or not):
* power P(kx, ky) = |FFT2(x - mean x)|^2 / (H W) (so white noise of variance s^2 has P = s^2 at every frequency);
* radial average: frequencies grouped by k = round(sqrt((kx / W)^2 + (ky / H)^2) * min(H, W)) (integer radius
  in units of 1 / min(H, W) cycles per pixel); radii 1 .. min(H, W) // 2 are kept (DC, the mean brightness, is
  left to the histogram metrics), one mean per radius -> (B, R);
* ``spectrum_distance`` = root-mean-square over radii of 10 log10(P_a(k) / P_b(k)), in dB (0 = same texture).
"""

from __future__ import annotations

import torch


def _batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"spectrum needs single-channel images, got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"spectrum needs (B, H, W) or (B, 1, H, W) images, got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def radial_bins(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Integer radius of every FFT frequency of an (h, w) image, (h, w) int64 (see the module docstring)."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, device=device, dtype=torch.float64)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) * min(h, w)
    return r.round().long()


def radial_power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Radially averaged power spectrum per image -> (B, R) float64, radii 1..R with R = min(H, W) // 2."""
    x = _batch(x)
    b, h, w = x.shape
    p = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs().pow(2) / (h * w)
    r = radial_bins(h, w, x.device).reshape(-1)
    n_r = min(h, w) // 2
    keep = (r >= 1) & (r <= n_r)
    idx = r[keep] - 1
    sums = torch.zeros(b, n_r, dtype=torch.float64, device=x.device).index_add_(1, idx, p.reshape(b, -1)[:, keep])
    counts = torch.bincount(idx, minlength=n_r).to(torch.float64)
    return sums / counts


def spectrum_distance(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """RMS over radii of the difference of the two log power spectra, in dB, one value per pair -> (B,).

    ``floor`` keeps the log finite for constant images. Lower is closer texture.
    """
    pa, pb = radial_power_spectrum(a), radial_power_spectrum(b)
    d = 10.0 * (torch.log10(pa.clamp_min(floor)) - torch.log10(pb.clamp_min(floor)))
    return d.pow(2).mean(dim=1).sqrt()


def mean_log_spectrum(x: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """The mean over images of 10 log10 P(k) (dB), (R,): a set's spectrum, for plots and set-level distances."""
    return (10.0 * torch.log10(radial_power_spectrum(x).clamp_min(floor))).mean(dim=0)
