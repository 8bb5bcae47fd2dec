"""An already-trained sonoshift plane classifier (e.g. the demo's judge) used as the loop's frozen plane critic.

Label hygiene: a critic may see only the labels of its label regime. A classifier trained elsewhere saw an
unknown share of the training labels, so the loop accepts one only when every label regime keeps ALL the labels
(``label_fractions`` all 1.0; ``rounds.check_config``). The demo's judge, trained on the target domain's training
split of the same prepared data, then saw a subset of what the regime keeps.

The adapter resizes the loop's frames to the classifier's input side (bilinear) and reorders its logits into the
loop's plane order, so the critics use it like their own PlaneNet (``forward`` logits, ``features`` embedding).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.errors import SonoshiftError


class JudgeCritic(nn.Module):
    """A plane classifier ``net`` (input side ``size``) whose class ``order[i]`` is the loop's plane i."""

    def __init__(self, net: nn.Module, size: int, order: list[int]) -> None:
        super().__init__()
        self.net, self.size = net, int(size)
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.head = nn.Identity()
        self.head.out_features = len(order)  # what predict_proba reads for an empty batch

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._resize(x))[:, self.order]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(self._resize(x))


def load_judge_critic(path: str | Path, planes: tuple[str, ...]) -> JudgeCritic:
    """The classifier at ``path`` (a ``sonoshift train-plane`` / demo judge folder) as a critic over ``planes``;
    one sentence when it does not know one of them."""
    from sonoshift.judges.plane.checkpoint import load_classifier

    clf = load_classifier(path)
    missing = [p for p in planes if p not in clf.classes]
    if missing:
        raise SonoshiftError(f"plane critic {path} does not know the plane {missing[0]!r} "
                             f"(its classes: {', '.join(clf.classes)}).")
    critic = JudgeCritic(clf.model.eval(), clf.image_size, [clf.classes.index(p) for p in planes]).eval()
    return critic.requires_grad_(False)


__all__ = ["JudgeCritic", "load_judge_critic"]
