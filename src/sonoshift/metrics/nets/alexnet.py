"""AlexNet convolutional features (torchvision layout), returning the five ReLU outputs LPIPS compares.

Parameter names are ``features.{0,3,6,8,10}.{weight,bias}``, so the ``features.*`` entries of torchvision's
ImageNet checkpoint ``alexnet-owt-7be5be79.pth`` load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from sonoshift.metrics.nets import tapped_features

ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"
# Index (in ``features``) of the ReLU after which each LPIPS tap is taken.
_TAPS = (1, 4, 7, 9, 11)


class AlexNetFeatures(nn.Module):
    """x (B, 3, H, W), ImageNet-normalized -> list of 5 feature maps (relu1 .. relu5)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return tapped_features(self.features, x, _TAPS)
