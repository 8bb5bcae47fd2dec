"""A compact 2D CNN for single-channel plane classification, with its penultimate features exposed.

Why not a MONAI DenseNet/ResNet: on the 2 CPU cores the project targets, the labelled sets are a few hundred
images, and MONAI's DenseNet121 (7.0M parameters) / ResNet18 (11.2M) cost 16x / 26x more CPU per training image
and 20x / 29x per inference image at 96x96 than this net (0.29M; bench/classifier.py measures the ratios), while
over-fitting such sets. A ResNet-like stem (5x5 stride-2 conv + 2x2 max
pool: /4, as cheap as possible at full resolution), then one stage per entry of ``widths`` (conv-BN-ReLU x2, a
2x2 max pool between stages), global average pooling to ``widths[-1]`` features (the embedding), dropout, one
linear layer. About 0.3M parameters and 45M multiply-adds per 128x128 frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """Network shape: stem width, channel width per stage (a max pool between stages) and dropout."""

    stem: int = 16
    widths: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.2


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class PlaneNet(nn.Module):
    """(B, 1, S, S) in [-1, 1] -> logits (B, num_classes); ``features`` gives the (B, widths[-1]) embedding."""

    def __init__(self, num_classes: int, cfg: NetConfig = NetConfig()) -> None:
        super().__init__()
        assert num_classes >= 2, "a plane classifier needs at least 2 classes"
        assert len(cfg.widths) >= 1, "NetConfig.widths needs at least 1 stage"
        layers: list[nn.Module] = [
            nn.Conv2d(1, cfg.stem, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(cfg.stem),
            nn.ReLU(inplace=True), nn.MaxPool2d(2),
        ]
        cin = cfg.stem
        for i, w in enumerate(cfg.widths):
            layers.append(_stage(cin, w))
            if i < len(cfg.widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, num_classes)
        self.feature_dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim): global average of the last stage (after ReLU, so >= 0)."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))
