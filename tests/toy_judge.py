"""A judge (downstream model) in one file, through the same registry, CLI and engine as the translators: a
logistic regression on each frame's mean and standard deviation that tells the two scanners apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.config import from_dict
from sonoshift.data.translation import TranslationData, unpaired_frames
from sonoshift.engine.checkpoint import ModelCheckpoint, load_module
from sonoshift.engine.loop import EngineConfig, MethodBase, StepContext
from sonoshift.methods import MethodSpec, register
from sonoshift.methods.kinds import JudgeBase


@dataclass(frozen=True)
class DomainConfig:
    name: str = "toy_domain"
    data: TranslationData = field(default_factory=TranslationData)
    train: EngineConfig = field(default_factory=lambda: EngineConfig(lr=0.1, batch_size=4))


def stats(x: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) in [-1,1] -> (B,2): mean and std of each frame."""
    return torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)


class DomainClassifier(MethodBase):
    name = "toy_domain"

    def __init__(self, cfg: DomainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.modules = {"head": nn.Linear(2, 1).to(device)}
        self.optimizers = {"head": torch.optim.Adam(self.modules["head"].parameters(), cfg.train.lr)}
        self.ema: dict[str, Any] = {}

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        x = torch.cat([batch["source"], batch["target"]])
        y = torch.cat([torch.zeros(len(batch["source"])), torch.ones(len(batch["target"]))]).to(x.device)
        loss = F.binary_cross_entropy_with_logits(self.modules["head"](stats(x))[:, 0], y)
        ctx.backward(loss)
        ctx.optimizer_step("head")
        return {"bce": loss.item()}

    def metadata(self) -> dict[str, Any]:
        return {"classes": [self.cfg.data.source_domain, self.cfg.data.target_domain]}


class DomainJudge(JudgeBase):
    method, task = "toy_domain", "domain"

    def __init__(self, head: nn.Linear, classes: tuple[str, ...]) -> None:
        self.head, self.classes = head.eval().requires_grad_(False), classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, 2): P(source scanner), P(target scanner)."""
        with torch.no_grad():
            p = torch.sigmoid(self.head(stats(x))[:, 0])
        return torch.stack([1 - p, p], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return stats(x)


def training_data(data: Path, cfg: DomainConfig) -> Any:
    return unpaired_frames(data, cfg.data, cfg.train.seed)


def build(cfg: DomainConfig, dataset: Any, device: torch.device, rank: int = 0) -> DomainClassifier:
    return DomainClassifier(cfg, device)


def load(ckpt: ModelCheckpoint, device: torch.device | None = None) -> DomainJudge:
    from_dict(DomainConfig, ckpt.state["config"])  # the config must still parse
    head = load_module(ckpt, "head", nn.Linear(2, 1))
    return DomainJudge(head, tuple(ckpt.state["metadata"]["classes"]))


register(MethodSpec(name="toy_domain", kind="judge", config=DomainConfig, dataset=training_data, build=build,
                    load=load, summary="Tell the two scanners apart from frame mean and std (test plug-in)."))
