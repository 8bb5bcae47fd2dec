"""The anchors of the diffusion translators: x_0 = a(source) + a zero-initialized correction.

Two anchors a: ``histogram_match`` (below) and ``affine``: one global linear grey map that gives the source
domain's pooled foreground mean and standard deviation those of the target domain (level 0, the black outside the
fan, stays 0). Both are fitted on the training split. The affine map keeps every local window's structure exactly
(LNCC is invariant to it, up to clipping), where the histogram map's monotone curve flattens dark windows and
leaves gaps in the histogram; on the demo data it is also as close to the ground truth (bench/ablate_ddgan.py).

With ``anchor: histogram_match`` the residual generator's base image is the source frame histogram-matched to the
target domain (the no-learning baseline of ``sonoshift.baselines.histogram_match``) instead of the source frame
(DDGAN) or the CycleGAN output (cascade). An untrained translator then returns exactly the histogram-matched
frame, and training can only add a correction to it. The target histogram is pooled from the training split's
target frames when the run is built and stored in the checkpoint metadata, so a translator rebuilds it.

Condition layout (the generator's input is ``cat[x_t, condition]``; the residual adds the first condition
channel): DDGAN ``[hm(y)]``; cascade ``[hm(y), G_ab(y)]`` (``generator.in_channels: 3``), where y is the
synthetic source G_{T->S}(x_0) in training and the real source frame at inference.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sonoshift.baselines.histogram_match import HistogramMatch, reference_from_frames
from sonoshift.errors import SonoshiftError
from sonoshift.methods.anchor_guard import GapReading, domain_gap, patient_histograms

ANCHORS: tuple[str, ...] = ("condition", "histogram_match", "affine", "depth_affine")


class AffineMatch(torch.nn.Module):
    """The affine anchors: (B, 1, H, W) in [-1, 1] -> same, grey level v (0..255) of every foreground pixel
    (level >= 0.5) in row r -> (v - mean_s[r]) * std_t[r] / std_s[r] + mean_t[r], clipped to 0..255; level 0
    stays 0. ``profiles``: the four statistics, each one value (one global map, ``anchor: affine``) or one per
    image row (a depth-dependent map, ``anchor: depth_affine``: scanners differ in time-gain compensation, so the
    grey levels of the two domains drift apart with depth). Row profiles are linearly resampled to the input's
    height when it differs. ``sigma`` > 0 (pixels): the source levels are first smoothed by a Gaussian of that
    width inside the foreground only (normalized convolution: the black outside the fan does not bleed in), a
    despeckle for a source scanner with coarser speckle than the target (fitted by :func:`fit_despeckle`). With
    ``range_sigma`` > 0 (grey levels of 0..255) the despeckle is edge-preserving instead: a bilateral filter of the
    mapped levels (spatial std ``sigma``, or 1 px when ``sigma`` is 0; :func:`masked_bilateral`), which smooths
    speckle but not the steps between tissues, the way a console's speckle reduction does. Plain tensor ops
    (traceable to ONNX: it is its own :meth:`module`)."""

    def __init__(self, mean_s, std_s, mean_t, std_t, sigma: float = 0.0,
                 range_sigma: float = 0.0) -> None:  # floats or per-row sequences
        super().__init__()
        for name, v in (("sigma", sigma), ("range sigma", range_sigma)):
            if not (v >= 0 and np.isfinite(v)):
                raise SonoshiftError(f"the affine anchor's despeckle {name} must be >= 0, got {v}.")
        self.range_sigma = float(range_sigma)
        self.sigma = float(sigma) if not range_sigma else float(sigma or BILATERAL_SPACE)
        rows = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (mean_s, std_s, mean_t, std_t)]
        if len({len(r) for r in rows}) != 1:
            raise SonoshiftError("the affine anchor's four statistics must have the same number of rows.")
        if not all((r > 0).all() for r in rows[1::2]):
            raise SonoshiftError("the affine anchor needs frames with some grey-level spread in both domains.")
        self.stats = tuple(tuple(float(v) for v in r) for r in rows)
        self.guard: dict[str, Any] | None = None  # the identity guard's reading when it was fitted with one
        self.register_buffer("profiles", torch.tensor(np.stack(rows), dtype=torch.float32), persistent=False)

    @property
    def kind(self) -> str:
        return "affine" if self.profiles.shape[1] == 1 else "depth_affine"

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"translator input must be (B,1,H,W), got {tuple(x.shape)}.")
        p = self.profiles.to(device=x.device, dtype=torch.float32)
        if p.shape[1] > 1:  # always resampled (the identity at the fitted height), so an ONNX trace stays dynamic
            p = torch.nn.functional.interpolate(p[None], size=x.shape[2], mode="linear", align_corners=True)[0]
        mean_s, std_s, mean_t, std_t = (r.reshape(1, 1, -1, 1) for r in p.unbind(0))
        v = (x.float().clamp(-1, 1) + 1) * 127.5
        fg = v >= 0.5
        if self.sigma > 0 and not self.range_sigma:
            v = masked_blur(v, fg, self.sigma)
        out = ((v - mean_s) * (std_t / std_s) + mean_t).clamp(0.0, 255.0)
        if self.range_sigma:
            out = masked_bilateral(out, fg, self.sigma, self.range_sigma)
        return (torch.where(fg, out, torch.zeros_like(out)) / 127.5 - 1.0).to(x.dtype)

    def module(self) -> "AffineMatch":
        return self


def masked_blur(v: torch.Tensor, fg: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (std ``sigma`` px, radius ceil(3 sigma), separable) of (B, 1, H, W) ``v`` over the pixels of
    ``fg`` only: blur(v * fg) / blur(fg) on ``fg``, ``v`` elsewhere (zero padding)."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32, device=v.device) / sigma) ** 2)
    k = k / k.sum()
    m = fg.to(v.dtype)
    both = torch.cat([v * m, m], dim=1)  # (B, 2, H, W): numerator and weight, one depthwise pass each way
    both = torch.nn.functional.conv2d(both, k.view(1, 1, -1, 1).expand(2, 1, -1, 1), padding=(r, 0), groups=2)
    both = torch.nn.functional.conv2d(both, k.view(1, 1, 1, -1).expand(2, 1, 1, -1), padding=(0, r), groups=2)
    num, den = both.unbind(1)
    return torch.where(fg, (num / den.clamp_min(1e-6)).unsqueeze(1), v)


BILATERAL_RADIUS = 2  # the bilateral despeckle's window is (2 r + 1)^2 pixels
BILATERAL_SPACE = 1.0  # its spatial std (px) unless the anchor says otherwise


def masked_bilateral(v: torch.Tensor, fg: torch.Tensor, sigma: float, range_sigma: float,
                     radius: int = BILATERAL_RADIUS) -> torch.Tensor:
    """Bilateral filter of (B, 1, H, W) levels ``v`` over the pixels of ``fg`` only: on ``fg``, the mean of the
    ``fg`` pixels of the (2 radius + 1)^2 window weighted by exp(-d^2 / (2 sigma^2)) (d: distance in pixels) x
    exp(-(v_j - v_i)^2 / (2 range_sigma^2)); ``v`` elsewhere. The window is summed one offset at a time from
    slices of the zero-padded input (memory of a few images, not of one image per window position); the slices'
    bounds do not depend on the size, so the filter traces to ONNX at any height and width."""
    m = fg.to(v.dtype)
    pad = (radius, radius, radius, radius)
    vp, mp = torch.nn.functional.pad(v * m, pad), torch.nn.functional.pad(m, pad)
    num, den = torch.zeros_like(v), torch.zeros_like(v)
    k = -0.5 / range_sigma**2
    for dy in range(-radius, radius + 1):
        rows = slice(radius + dy, (dy - radius) or None)
        for dx in range(-radius, radius + 1):
            cols = slice(radius + dx, (dx - radius) or None)
            near, near_fg = vp[..., rows, cols], mp[..., rows, cols]
            w = near_fg * torch.exp(k * (near - v) ** 2) * math.exp(-0.5 * (dy * dy + dx * dx) / sigma**2)
            num, den = num + w * near, den + w
    return torch.where(fg, num / den.clamp_min(1e-6), v)


def apply_as_gain(y: torch.Tensor, base: torch.Tensor, sigma: float) -> torch.Tensor:
    """A translator's output ``y`` re-applied to its base image (the anchor) as a smooth local gain: levels
    base x blur(y) / blur(base), both blurs Gaussian (std ``sigma`` px) inside the base's foreground (level >= 0.5)
    only, gain clipped to [0, 4]; black outside the foreground. (B, 1, H, W) tensors in [-1, 1]. Ultrasound
    speckle is multiplicative: a brightness change applied as a gain keeps the base's speckle contrast, where the
    same change added darkens the mean but leaves full-amplitude speckle over a black floor. Plain tensor ops
    (traceable to ONNX)."""
    a = (base.float().clamp(-1, 1) + 1) * 127.5
    v = (y.float().clamp(-1, 1) + 1) * 127.5
    fg = a >= 0.5
    gain = (masked_blur(v, fg, sigma) / masked_blur(a, fg, sigma).clamp_min(1.0)).clamp(0.0, 4.0)
    out = torch.where(fg, (a * gain).clamp(0.0, 255.0), torch.zeros_like(a))
    return (out / 127.5 - 1.0).to(y.dtype)


def keep_moments(y: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``y`` with each image's grey-level mean and standard deviation inside its base image's foreground (level
    >= 0.5 of 0..255) set to the base image's there, clipped to [-1, 1]; ``y`` outside the foreground. (B, 1, H, W)
    tensors in [-1, 1]. What a translator whose anchor the guard made the identity (``methods.anchor_guard``)
    applies last: the two domains' grey levels were found not to differ, so its output may change local structure
    but not an image's overall levels. Plain tensor ops (traceable to ONNX)."""
    yf, b = y.float(), base.float()
    fg = (((b.clamp(-1, 1) + 1) * 127.5) >= 0.5).float()
    n = fg.sum((1, 2, 3), keepdim=True).clamp_min(1.0)

    def moments(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (v * fg).sum((1, 2, 3), keepdim=True) / n
        return mean, ((((v - mean) ** 2) * fg).sum((1, 2, 3), keepdim=True) / n).sqrt()

    (mb, sb), (my, sy) = moments(b), moments(yf)
    z = ((yf - my) * (sb / sy.clamp_min(1e-6)) + mb).clamp(-1.0, 1.0)
    return torch.where(fg > 0, z, yf).to(y.dtype)


def keeps_moments(anchor: Any) -> bool:
    """Whether a translator with this anchor keeps its base image's moments (:func:`keep_moments`): an affine
    anchor the guard made the identity."""
    guard = getattr(anchor, "guard", None)
    return bool(guard and guard.get("identity"))


def evenly(n: int, k: int) -> np.ndarray:
    """Indices of up to ``k`` evenly spaced items of ``n`` (first and last included; none when ``n`` is 0)."""
    return np.linspace(0, n - 1, min(n, k)).round().astype(int)


DESPECKLE_SIGMAS = tuple(round(0.1 * i, 1) for i in range(16))  # the Gaussian grid fit_despeckle searches, px
RANGE_SIGMAS = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0)  # its bilateral grid, grey levels
DESPECKLES = ("gaussian", "bilateral")


def high_frequency_share(levels: torch.Tensor, fov: torch.Tensor) -> float:
    """Speckle fineness of frames (N, 1, H, W) (grey levels) inside their field of view ``fov`` (bool, same
    shape): the energy of ``x - blur_1px(x)`` over the variance of ``x``, each frame's interior (pixels whose
    1-px neighbourhood is all field of view), averaged over frames."""
    x, m = levels.float(), fov.bool()
    inner = (masked_blur(m.float(), torch.ones_like(m), 1.0) > 0.999).float()
    d = x - masked_blur(x, m, 1.0)
    n = inner.sum((1, 2, 3))
    ok = n >= 2
    if not ok.any():
        raise SonoshiftError("the despeckle fit needs frames with a field of view, and got none.")
    mean = (x * inner).sum((1, 2, 3)) / n.clamp_min(1)
    var = (((x - mean.view(-1, 1, 1, 1)) ** 2) * inner).sum((1, 2, 3)) / n.clamp_min(1)
    share = ((d * d) * inner).sum((1, 2, 3)) / n.clamp_min(1) / var.clamp_min(1.0)
    return float(share[ok].double().mean())


def fit_despeckle(anchor: "AffineMatch", source: tuple[np.ndarray, np.ndarray],
                  target: tuple[np.ndarray, np.ndarray], kind: str = "gaussian") -> "AffineMatch":
    """``anchor`` with the despeckle that brings the high-frequency share of its output on the source (frames,
    fov) closest to that of the target (frames, fov); uint8 / bool (N, H, W), unpaired (no frame of one domain is
    matched to one of the other). ``kind`` "gaussian": the Gaussian's sigma from ``DESPECKLE_SIGMAS``;
    "bilateral": the bilateral filter's range sigma from ``RANGE_SIGMAS`` (spatial std ``BILATERAL_SPACE``)."""
    if kind not in DESPECKLES:
        raise SonoshiftError(f"unknown despeckle {kind!r}; the despeckles are {', '.join(DESPECKLES)}.")
    tf, tm = (torch.from_numpy(np.asarray(a)) for a in target)
    want = high_frequency_share(tf[:, None].float(), tm[:, None] > 0)
    sf = torch.from_numpy(np.asarray(source[0]))[:, None].float() / 127.5 - 1.0
    sm = torch.from_numpy(np.asarray(source[1]))[:, None] > 0
    grid = ([{"sigma": s} for s in DESPECKLE_SIGMAS] if kind == "gaussian" else
            [{"range_sigma": r} for r in RANGE_SIGMAS])
    best, best_err = grid[0], np.inf
    for params in grid:
        a = AffineMatch(*anchor.stats, **params)
        with torch.no_grad():
            out = (a(sf) + 1) * 127.5
        err = abs(high_frequency_share(out, sm) - want)
        if err < best_err:
            best, best_err = params, err
    return AffineMatch(*anchor.stats, **best)


DEPTH_SIGMA = 0.1  # the depth anchor's row statistics are Gaussian-smoothed over this fraction of the height


def _foreground_stats(frames: np.ndarray, fov: np.ndarray, depth: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the grey levels of uint8 frames (N, H, W) inside their field of view ``fov`` (N, H, W) bool
    (black anechoic pixels inside the fan count: one scanner clips more of them to 0 than another): one value
    each, or with ``depth`` one per row from moments smoothed over rows (Gaussian, DEPTH_SIGMA x H), rows with no
    field of view within reach taking the global values; std floored at one grey level."""
    f = frames.astype(np.float64)
    if not fov.any():
        raise SonoshiftError("the affine anchor needs frames with a field of view, and got none.")
    n, s1, s2 = fov.sum(), f[fov].sum(), (f[fov] ** 2).sum()
    mu = np.array([s1 / n])
    sd = np.sqrt(np.maximum(np.array([s2 / n]) - mu**2, 1.0))
    if not depth:
        return mu, sd
    from scipy.ndimage import gaussian_filter1d

    sigma = DEPTH_SIGMA * frames.shape[1]
    rn, r1, r2 = (gaussian_filter1d(a, sigma, mode="nearest") for a in
                  (fov.sum((0, 2)).astype(np.float64), (f * fov).sum((0, 2)), (f * f * fov).sum((0, 2))))
    ok = rn >= 1.0
    rmu = np.where(ok, r1 / np.maximum(rn, 1e-9), mu[0])
    rsd = np.where(ok, np.sqrt(np.maximum(r2 / np.maximum(rn, 1e-9) - rmu**2, 1.0)), sd[0])
    return rmu, rsd


def _levels(dataset: Any, key: str, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced frames ``key`` of ``dataset`` as uint8 levels (N, H, W)."""
    n = len(dataset)
    if n == 0:
        raise SonoshiftError(f"the translator anchor needs {key} training frames, and the dataset is empty.")
    idx = evenly(n, max_frames)
    return np.stack([
        ((dataset[int(i)][key][0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy() for i in idx
    ])


def fit_affine(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray], depth: bool = False,
               max_frames: int = 2000) -> AffineMatch:
    """The affine anchor from (frames, field-of-view masks) of the source and of the target domain, uint8 / bool
    (N, H, W): mean and std of the levels inside the field of view of up to ``max_frames`` evenly spaced frames of
    each, pooled (with ``depth``: per image row, see ``_foreground_stats``)."""
    stats = []
    for frames, fov in (source, target):
        if len(frames) == 0:
            raise SonoshiftError("the affine anchor needs training frames of both domains, and one is empty.")
        idx = evenly(len(frames), max_frames)
        stats += _foreground_stats(np.asarray(frames[idx]), np.asarray(fov[idx]) > 0, depth)
    if len(stats[0]) != len(stats[2]):
        raise SonoshiftError(f"the depth anchor needs frames of one height in both domains, got {len(stats[0])} "
                             f"and {len(stats[2])} rows.")
    return AffineMatch(*stats)


def _patients(root: str | Path, split: str, domain: str, n: int) -> list[str] | None:
    """The patient id of each of the ``n`` packed ``split`` frames of ``domain`` (manifest order), or None when the
    folder has no manifest that matches the cache."""
    from sonoshift.data.manifests import read_manifest

    path = Path(root) / f"manifest_{split}.csv"
    if not path.is_file():
        return None
    ids = [r["patient_id"] for r in read_manifest(path) if r["domain"] == domain]
    return ids if len(ids) == n else None


def guard_reading(root: str | Path, split: str, domains: tuple[str, str],
                  pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> GapReading | None:
    """The identity guard's reading (``methods.anchor_guard``) of the ``split`` frames and fields of view
    ``pairs`` of the two ``domains`` of a prepared folder; None when a domain's patients are unknown or too few."""
    counts = []
    for d, (frames, fov) in zip(domains, pairs):
        ids = _patients(root, split, d, len(frames))
        if ids is None:
            return None
        counts.append(patient_histograms(frames, fov, ids))
    return domain_gap(counts[0], counts[1], np.random.default_rng(seed))


def fit_affine_prepared(root: str | Path, split: str, source: str, target: str, depth: bool = False,
                        despeckle: bool = False, max_frames: int = 100,
                        despeckle_kind: str = "gaussian", guard: bool = True) -> AffineMatch:
    """:func:`fit_affine` on the prepared dataset ``root``'s ``split`` frames and masks (``cache/<split>``); a
    domain without masks uses its non-black pixels (level > 0) as the field of view. ``despeckle``: also fit the
    ``despeckle_kind`` despeckle (:func:`fit_despeckle`, on up to ``max_frames`` evenly spaced frames of each
    domain). ``guard``: the identity map (the source's own statistics on both sides, no despeckle) when the
    domains' grey levels differ no more than two halves of one domain's patients (``methods.anchor_guard``); the
    reading is kept in the anchor's ``guard`` (and so in a checkpoint's metadata)."""
    from sonoshift.data.cache import load_cache, load_fov

    pairs = [(load_cache(root, split, d), load_fov(root, split, d)) for d in (source, target)]
    anchor = fit_affine(pairs[0], pairs[1], depth)
    reading = guard_reading(root, split, (source, target), pairs) if guard else None
    identity = reading is not None and reading.identity
    if identity:
        anchor = AffineMatch(anchor.stats[0], anchor.stats[1], anchor.stats[0], anchor.stats[1])
    if reading is not None:
        anchor.guard = reading.as_dict()
    if not despeckle or identity:
        return anchor
    few = [tuple(np.asarray(a[evenly(len(a), max_frames)]) for a in p) for p in pairs]
    out = fit_despeckle(anchor, few[0], few[1], despeckle_kind)
    out.guard = anchor.guard
    return out


def fit_affine_dataset(dataset: Any, split: str, source: str, target: str, depth: bool = False,
                       despeckle: bool = False, despeckle_kind: str = "gaussian", guard: bool = True) -> AffineMatch:
    """:func:`fit_affine_prepared` on the prepared folder a training dataset was read from (its ``root``)."""
    root = getattr(dataset, "root", None)
    if root is None:
        raise SonoshiftError("the affine anchors are fitted on a prepared dataset folder; this dataset has none.")
    return fit_affine_prepared(root, split, source, target, depth=depth, despeckle=despeckle,
                               despeckle_kind=despeckle_kind, guard=guard)


def fit_anchor(dataset: Any, source: str, target: str, max_frames: int = 2000, key: str = "target") -> HistogramMatch:
    """The histogram anchor fitted on a training dataset (items {"target": (1, H, W) in [-1, 1]}): the pooled
    grey-level histogram of up to ``max_frames`` evenly spaced target frames, quantized to uint8 levels as the
    harmonize command writes them. ``key="source"``: pooled from the items' source frames (the anchor of a
    target -> source generator, e.g. an anchored CycleGAN's G_ba)."""
    frames = _levels(dataset, key, max_frames)
    levels, quantiles = reference_from_frames(frames)
    return HistogramMatch(levels, quantiles, source, target, tuple(int(s) for s in frames.shape[-2:]))


Anchor = HistogramMatch | AffineMatch


def anchor_metadata(hm: Anchor | None) -> dict[str, Any] | None:
    """What the checkpoint stores to rebuild the anchor (None for ``anchor: condition``)."""
    if hm is None:
        return None
    if isinstance(hm, AffineMatch):
        return {"kind": hm.kind, "stats": [list(r) for r in hm.stats], **({"sigma": hm.sigma} if hm.sigma else {}),
                **({"range_sigma": hm.range_sigma} if hm.range_sigma else {}),
                **({"guard": hm.guard} if hm.guard else {})}
    return {"kind": "histogram_match", "levels": list(hm.levels), "quantiles": list(hm.quantiles)}


def anchor_from_metadata(meta: dict[str, Any] | None, source: str, target: str,
                         size: tuple[int, int]) -> Anchor | None:
    """The anchor of a checkpoint's metadata entry ``anchor`` (None when the run had none)."""
    if not meta:
        return None
    if meta.get("kind") in ("affine", "depth_affine"):
        out = AffineMatch(*meta["stats"], sigma=float(meta.get("sigma", 0.0)),
                          range_sigma=float(meta.get("range_sigma", 0.0)))
        out.guard = meta.get("guard")
        return out
    if meta.get("kind") != "histogram_match":
        raise SonoshiftError(f"unknown translator anchor {meta.get('kind')!r} in the checkpoint metadata.")
    return HistogramMatch(tuple(meta["levels"]), tuple(meta["quantiles"]), source, target, size)


def checkpoint_guard(model: str | Path) -> dict[str, Any] | None:
    """The anchor guard's reading stored in a trained translator's checkpoint (run folder, checkpoint folder or
    file; ``anchor_guard.GapReading.as_dict``), None when its anchor has none."""
    from sonoshift.engine.checkpoint import read_model

    meta = read_model(model).state.get("metadata", {})
    guard = (meta.get("anchor") or {}).get("guard") if isinstance(meta, dict) else None
    return guard or None


def anchored_condition(hm: Anchor | None, source: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """The generator's condition from the source frame (B, 1, H, W) and ``base``, the CycleGAN output for the
    cascade or None for the DDGAN. No anchor: ``base``, or the source when there is none. Histogram or affine
    anchor: hm(source), followed by ``base`` as a second channel when there is one."""
    if hm is None:
        return source if base is None else base
    with torch.no_grad():
        a = hm(source)
    return a if base is None else torch.cat([a, base], dim=1)


__all__ = [
    "AffineMatch", "Anchor", "anchor_from_metadata", "anchor_metadata", "anchored_condition", "ANCHORS",
    "apply_as_gain", "checkpoint_guard", "DEPTH_SIGMA", "DESPECKLES", "evenly", "fit_affine",
    "fit_affine_dataset", "fit_affine_prepared", "fit_anchor", "fit_despeckle", "guard_reading",
    "high_frequency_share", "keep_moments", "keeps_moments", "masked_bilateral", "masked_blur",
]
