"""Histogram matching to the target domain: the no-learning baseline every harmonizer must beat.

Fit: pool the grey levels of the target domain's training frames into one histogram (levels 1..255 of the
uint8 frames; level 0, the black outside the fan and anechoic fluid, is left alone). Translate: map each source
frame's own histogram onto that pooled one with a global monotone grey map (classic histogram specification,
as scikit-image's ``match_histograms``: source quantiles are interpolated into the target's quantile function).
Nothing spatial changes, so structure is kept exactly; only the grey levels move.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sonoshift.errors import SonoshiftError
from sonoshift.methods.kinds import TranslatorBase


@dataclass(frozen=True)
class HistogramMatch(TranslatorBase):
    """A translator (B,1,H,W) in [-1,1] -> same, matching each frame's histogram to the target reference.

    ``levels`` (increasing grey levels 1..255 present in the target frames) and ``quantiles`` (their cumulative
    frequencies, last = 1) describe the pooled target histogram.
    """

    levels: tuple[float, ...]
    quantiles: tuple[float, ...]
    source_domain: str
    target_domain: str
    image_size: tuple[int, int]
    method: str = "histogram_match"

    def map_frame(self, frame: np.ndarray) -> np.ndarray:
        """uint8-valued levels (H, W) -> matched levels (H, W) float (0 stays 0)."""
        out = frame.astype(np.float64)
        fg = frame > 0
        if not fg.any():
            return out
        values, counts = np.unique(frame[fg], return_counts=True)
        src_q = np.cumsum(counts) / counts.sum()
        mapped = np.interp(src_q, np.asarray(self.quantiles), np.asarray(self.levels))
        out[fg] = mapped[np.searchsorted(values, frame[fg])]
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"translator input must be (B,1,H,W), got {tuple(x.shape)}.")
        levels = ((x.detach().float().cpu()[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.int64).numpy()
        out = np.stack([self.map_frame(f) for f in levels])
        return torch.from_numpy(out / 127.5 - 1.0).to(x.dtype).to(x.device)[:, None]

    def module(self) -> "HistogramMatchNet":
        """The same map as a torch module of plain tensor ops (traceable: ONNX export of anchored translators)."""
        return HistogramMatchNet(self.levels, self.quantiles)

    def save(self, path: str | Path) -> Path:
        """Write the fitted map as JSON (``load_histogram_match`` reads it back)."""
        p = Path(path)
        p.write_text(json.dumps({"method": self.method, "levels": self.levels, "quantiles": self.quantiles,
                                 "source_domain": self.source_domain, "target_domain": self.target_domain,
                                 "image_size": list(self.image_size)}))
        return p


class HistogramMatchNet(torch.nn.Module):
    """:meth:`HistogramMatch.__call__` in tensor ops only (scatter-add histogram, cumulative sum, a broadcast
    piecewise-linear interpolation into the target quantile function, a gather), so that it traces to ONNX:
    (B, 1, H, W) in [-1, 1] -> same. Level 0 stays 0, as in the numpy map."""

    def __init__(self, levels: tuple[float, ...], quantiles: tuple[float, ...]) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        q = torch.tensor(quantiles, dtype=torch.float32)
        if len(lv) == 1:  # one target level: every foreground level maps to it
            lv, q = lv.repeat(2), torch.tensor([0.0, 1.0])
        self.register_buffer("levels", lv)
        self.register_buffer("quantiles", q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        level = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.int64).reshape(b, -1)  # (B, HW)
        counts = torch.zeros(b, 256, dtype=torch.float32).scatter_add(1, level, torch.ones_like(level, dtype=torch.float32))
        counts = counts * (torch.arange(256) > 0).to(torch.float32)  # level 0 is left alone
        cdf = counts.cumsum(1) / counts.sum(1, keepdim=True).clamp_min(1.0)  # (B, 256): source quantile of a level
        q, lv = self.quantiles, self.levels
        j = ((q[None, None, :] <= cdf[..., None]).to(torch.int64).sum(-1) - 1).clamp(0, q.shape[0] - 2)
        q0, q1, l0, l1 = q[j], q[j + 1], lv[j], lv[j + 1]
        t = ((cdf - q0) / (q1 - q0)).clamp(0.0, 1.0)  # np.interp clamps to the end values outside [q0, q_last]
        mapped = l0 + t * (l1 - l0)
        out = torch.gather(mapped, 1, level) * (level > 0).to(torch.float32)
        return (out / 127.5 - 1.0).reshape(x.shape).to(x.dtype)


def reference_from_frames(frames: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pooled histogram of uint8 frames (N, H, W) over levels >= 1 -> (levels, cumulative quantiles)."""
    counts = np.bincount(np.asarray(frames, dtype=np.uint8).reshape(-1), minlength=256)[1:].astype(np.float64)
    if counts.sum() == 0:
        raise SonoshiftError("histogram matching needs target frames with some non-black pixels.")
    present = np.nonzero(counts)[0]
    q = np.cumsum(counts[present]) / counts.sum()
    return tuple(float(v + 1) for v in present), tuple(float(v) for v in q)


def fit_histogram_match(
    data: str | Path, source: str, target: str, *, split: str = "train", max_frames: int = 2000
) -> HistogramMatch:
    """Fit on the target frames of ``split`` of the prepared dataset ``data`` (its packed cache), evenly
    subsampled to at most ``max_frames``. No learning: a pooled histogram."""
    cache = Path(data) / "cache" / split / f"{target}.npy"
    if not cache.is_file():
        raise SonoshiftError(f"{cache} does not exist: histogram matching needs a prepared dataset (packed cache).")
    frames = np.load(cache, mmap_mode="r")
    idx = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int)
    levels, quantiles = reference_from_frames(np.asarray(frames[idx]))
    size = tuple(int(s) for s in frames.shape[-2:])
    return HistogramMatch(levels, quantiles, source, target, size)  # type: ignore[arg-type]


def load_histogram_match(path: str | Path) -> HistogramMatch:
    """Read a map written by :meth:`HistogramMatch.save`."""
    d = json.loads(Path(path).read_text())
    return HistogramMatch(tuple(d["levels"]), tuple(d["quantiles"]), d["source_domain"], d["target_domain"],
                          tuple(d["image_size"]))
