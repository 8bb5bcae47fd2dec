"""The gestational-age estimator (``sonoshift.judges.ga``: head segmentation -> ellipse -> HC -> GA) in the method
registry, kind ``judge``.

``sonoshift.methods.load_model(FOLDER, pixel_size_mm=0.15)`` on a `sonoshift ga build` folder returns a
:class:`GaJudge`: images (B,1,H,W) in [-1,1] -> GA in weeks (B,) by Hadlock (NaN where no head is found). HC in
mm needs the size of an input pixel: give it when loading or per call. Built by `sonoshift ga build` (ellipse
calibration on HC18 training masks), not by the shared engine.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import GaEstimator, load_ga_estimator, measure
from sonoshift.downstream.hc18 import Hc18Config
from sonoshift.methods import MethodSpec, register
from sonoshift.methods.kinds import JudgeBase

METHOD = "ga_head"


class GaJudge(JudgeBase):
    """A calibrated GA estimator as a judge (CPU inference; inputs on any device)."""

    method, task, classes = METHOD, "ga", ()

    def __init__(self, est: GaEstimator, pixel_size_mm: float | None = None) -> None:
        self.estimator, self.pixel_size_mm = est, pixel_size_mm

    def __call__(self, x: torch.Tensor, pixel_size_mm: float | None = None) -> torch.Tensor:
        """GA in weeks (B,) (Hadlock, from the fitted head ellipse); NaN for an image with no head found.
        ``pixel_size_mm``: mm per pixel of ``x`` (default: the one given at load)."""
        px = pixel_size_mm if pixel_size_mm is not None else self.pixel_size_mm
        if px is None or not math.isfinite(px) or px <= 0:
            raise SonoshiftError("the GA judge needs the pixel size of its input (pixel_size_mm, mm per pixel).")
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"GA judge input must be (B,1,H,W) in [-1,1], got {tuple(x.shape)}.")
        frames = ((x[:, 0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        m = measure(self.estimator, list(frames), [float(px)] * len(frames))
        return torch.tensor(m["ga_hadlock_weeks"].to_numpy(dtype=np.float64), device=x.device)


def load(ckpt: Path, device: torch.device | None = None, pixel_size_mm: float | None = None) -> GaJudge:
    return GaJudge(load_ga_estimator(ckpt, device), pixel_size_mm)


SPEC = register(MethodSpec(
    name=METHOD, kind="judge", config=Hc18Config, dataset=None, build=None, load=load,
    summary="Gestational age from a head image: HC18 head segmenter + calibrated ellipse -> HC -> GA (Hadlock).",
    trainer="sonoshift ga build",
))
