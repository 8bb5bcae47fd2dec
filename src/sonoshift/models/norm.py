"""Instance normalisation without affine parameters, computed as group norm with one group per channel.

Same function as ``nn.InstanceNorm2d(C, affine=False, track_running_stats=False)`` (per image and channel:
subtract the mean, divide by sqrt(biased variance + eps)), but PyTorch's group-norm kernel works on
channels_last tensors directly, where instance norm copies them to contiguous NCHW first: about 1.2x faster
for the whole ResNet generator on CPU in channels_last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InstanceNorm(nn.Module):
    """(B, C, H, W) -> same shape, each (image, channel) plane normalised to mean 0, variance 1."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_features, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"
