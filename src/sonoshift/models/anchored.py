"""A generator anchored on a fixed grey map: y = clamp(a(x) + body(cat[x, a(x)]), -1, 1).

``a`` is the anchor of the diffusion translators (``methods/anchor.py``): the per-frame histogram map to a
domain's pooled histogram (``baselines.histogram_match`` as tensor ops, :class:`HistogramMatchNet`) or the
depth-wise linear grey map (``AffineMatch``); both are plain tensor ops, so the whole generator exports to ONNX.
``body`` is a network with 2 input channels (the frame and its mapped version) and a linear head whose weights
start at zero (:meth:`zero_head`). An untrained anchored generator therefore returns exactly the mapped frame, and
training only learns a correction to it: the compact student starts where its anchored teacher starts. The anchor
carries no gradient (the histogram map quantizes to grey levels; the affine map is fixed); gradients reach the
input through the body's first channel. An affine anchor that the anchor guard made the identity
(``methods.anchor_guard``) also makes the generator keep each frame's grey-level mean and spread
(``methods.anchor.keep_moments``), as the guarded diffusion translators do.
"""

from __future__ import annotations

import torch
from torch import nn

from typing import TYPE_CHECKING

from sonoshift.methods.anchor import keep_moments, keeps_moments

if TYPE_CHECKING:
    from sonoshift.baselines.histogram_match import HistogramMatch
    from sonoshift.methods.anchor import AffineMatch


class AnchoredGenerator(nn.Module):
    """(B, 1, H, W) in [-1, 1] -> same: ``anchor(x) + body(cat[x, anchor(x)])``, clamped to [-1, 1]."""

    def __init__(self, anchor: nn.Module, body: nn.Module) -> None:
        super().__init__()
        self.anchor = anchor
        self.body = body
        self.keep = keeps_moments(anchor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = self.anchor(x)
        y = (a + self.body(torch.cat([x, a], dim=1))).clamp(-1.0, 1.0)
        if self.keep:
            y = keep_moments(y, a)  # the guard found no grey-level gap: only local structure may change
        return y

    @torch.no_grad()
    def zero_head(self) -> "AnchoredGenerator":
        """Zero the body's last layer (``body.head``): the generator returns the anchor until it is trained."""
        self.body.head.weight.zero_()
        if self.body.head.bias is not None:
            self.body.head.bias.zero_()
        return self


def anchored_mobile_unet(hm: "HistogramMatch | AffineMatch", ch: int, n_blocks: int) -> AnchoredGenerator:
    """The mobile U-Net (width ``ch``, ``n_blocks``; 2 input channels, linear head) anchored on ``hm`` (a
    ``HistogramMatch`` or an ``AffineMatch``; its ``module()`` is the anchor inside the graph)."""
    from sonoshift.models.mobile_unet import MobileUNet

    return AnchoredGenerator(hm.module(), MobileUNet(ch, n_blocks, in_channels=2, tanh=False))


__all__ = ["AnchoredGenerator", "anchored_mobile_unet"]
