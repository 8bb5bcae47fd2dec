"""The U-Net segmenters (``sonoshift.downstream``: the simulator's target-domain segmenter, the HC18 head
segmenter) in the method registry, kind ``judge``.

``sonoshift.methods.load_model(FOLDER)`` on a `sonoshift segment train|train-hc18` folder returns a
:class:`SegmenterJudge`: images (B,1,H,W) in [-1,1] -> class ids (B,H,W) at the input's size. Trained by
`sonoshift segment`, not by the shared engine. A folder calibrated by `sonoshift ga build` loads as ``ga_head``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sonoshift.downstream.segmenter import Segmenter, load_segmenter, predict
from sonoshift.downstream.target_segmenter import SegmenterConfig
from sonoshift.errors import SonoshiftError
from sonoshift.methods import MethodSpec, register
from sonoshift.methods.kinds import JudgeBase

METHOD = "unet_segmenter"


class SegmenterJudge(JudgeBase):
    """A trained segmenter as a judge (CPU inference; inputs on any device)."""

    method, task = METHOD, "segmentation"

    def __init__(self, seg: Segmenter) -> None:
        self.segmenter, self.classes = seg, tuple(seg.classes)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Class ids (B, H, W) int64 (index into ``classes``) at the input's size."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"segmenter judge input must be (B,1,H,W) in [-1,1], got {tuple(x.shape)}.")
        frames = ((x[:, 0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        ids = predict(self.segmenter, list(frames))
        return torch.from_numpy(np.stack(ids).astype(np.int64)).to(x.device)


def load(ckpt: Path, device: torch.device | None = None) -> SegmenterJudge:
    return SegmenterJudge(load_segmenter(ckpt, device))


SPEC = register(MethodSpec(
    name=METHOD, kind="judge", config=SegmenterConfig, dataset=None, build=None, load=load,
    summary="U-Net segmenter (simulator anatomy or HC18 heads).", default_config="configs/cpu/segmenter.yaml",
    trainer="sonoshift segment train",
))
