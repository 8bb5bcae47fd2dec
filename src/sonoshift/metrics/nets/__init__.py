"""ImageNet feature stacks in plain PyTorch, with torchvision's ``features.N`` parameter names."""

from __future__ import annotations

import torch
from torch import nn


def tapped_features(features: nn.Sequential, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
    """Run ``features`` layer by layer and return the activations after the layers indexed by ``taps``
    (stopping after the last tap): the LPIPS feature stacks of AlexNet and VGG16."""
    outs = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            outs.append(x)
        if i == taps[-1]:
            break
    return outs
