"""A generator anchored on histogram matching: y = clamp(hm(x) + body(cat[x, hm(x)]), -1, 1).

``hm`` is the per-frame histogram map to a domain's pooled histogram (``baselines.histogram_match``, as tensor
ops: :class:`HistogramMatchNet`, so the whole generator exports to ONNX), ``body`` a network with 2 input channels
(the frame and its matched version) and a linear head whose weights start at zero (:meth:`zero_head`). An untrained
anchored generator therefore returns exactly the histogram-matched frame, and training only learns a correction
to it: the same anchor the diffusion translators use (``methods/anchor.py``), given to the compact student so that
it starts where its anchored teacher starts. The anchor has no gradient (it quantizes to grey levels); gradients
reach the input through the body's first channel.
"""

from __future__ import annotations

import torch
from torch import nn

from sonoshift.baselines.histogram_match import HistogramMatch


class AnchoredGenerator(nn.Module):
    """(B, 1, H, W) in [-1, 1] -> same: ``anchor(x) + body(cat[x, anchor(x)])``, clamped to [-1, 1]."""

    def __init__(self, anchor: nn.Module, body: nn.Module) -> None:
        super().__init__()
        self.anchor = anchor
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = self.anchor(x)
        return (a + self.body(torch.cat([x, a], dim=1))).clamp(-1.0, 1.0)

    @torch.no_grad()
    def zero_head(self) -> "AnchoredGenerator":
        """Zero the body's last layer (``body.head``): the generator returns the anchor until it is trained."""
        self.body.head.weight.zero_()
        if self.body.head.bias is not None:
            self.body.head.bias.zero_()
        return self


def anchored_mobile_unet(hm: HistogramMatch, ch: int, n_blocks: int) -> AnchoredGenerator:
    """The mobile U-Net (width ``ch``, ``n_blocks``; 2 input channels, linear head) anchored on ``hm``."""
    from sonoshift.models.mobile_unet import MobileUNet

    return AnchoredGenerator(hm.module(), MobileUNet(ch, n_blocks, in_channels=2, tanh=False))


__all__ = ["AnchoredGenerator", "anchored_mobile_unet"]
