"""VGG16 convolutional features (torchvision layout), returning the five ReLU outputs LPIPS compares.

Parameter names are ``features.N.{weight,bias}`` for the 13 convolutions, so the ``features.*`` entries of
torchvision's ImageNet checkpoint ``vgg16-397923af.pth`` load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from sonoshift.metrics.nets import tapped_features

VGG16_CHANNELS = (64, 128, 256, 512, 512)
VGG16_CHECKPOINT = "vgg16-397923af.pth"
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's numbering.
_TAPS = (3, 8, 15, 22, 29)


class VGG16Features(nn.Module):
    """x (B, 3, H, W), ImageNet-normalized -> list of 5 feature maps (relu1_2 .. relu5_3)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return tapped_features(self.features, x, _TAPS)
