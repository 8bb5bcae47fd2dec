"""Instance normalisation without affine parameters, computed as group norm with one group per channel.

Same function as ``nn.InstanceNorm2d(C, affine=False, track_running_stats=False)`` (per image and channel:
subtract the mean, divide by sqrt(biased variance + eps)), but PyTorch's group-norm kernel is faster on the
CPU: forward + backward 1.1-2x per layer in NCHW (measured at the generator's shapes on 2 AVX2 cores), and it
works on channels_last tensors directly, where instance norm copies them to contiguous NCHW first.
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
