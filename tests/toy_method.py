"""A whole translation method in one file, registered from outside the package: a per-pixel affine map
y = a * x + b (a, b: one value per pixel of the model size) trained by L1 between the mapped source frame and a
target frame. Importing this module (or naming it in SONOSHIFT_PLUGINS) is all it takes to train it with
`sonoshift train toy_affine`, run it in the study pipeline and harmonize with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sonoshift.config import from_dict
from sonoshift.data.translation import TranslationData, unpaired_frames
from sonoshift.engine.checkpoint import ModelCheckpoint, load_module
from sonoshift.engine.loop import EngineConfig, MethodBase, StepContext
from sonoshift.methods import MethodSpec, register
from sonoshift.methods.kinds import TranslatorBase


@dataclass(frozen=True)
class ToyConfig:
    name: str = "toy_affine"
    data: TranslationData = field(default_factory=TranslationData)
    train: EngineConfig = field(default_factory=lambda: EngineConfig(lr=0.05, batch_size=4))


class Affine(nn.Module):
    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(1, 1, *size))
        self.b = nn.Parameter(torch.zeros(1, 1, *size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a * x + self.b).clamp(-1, 1)


class ToyAffine(MethodBase):
    name = "toy_affine"

    def __init__(self, cfg: ToyConfig, device: torch.device, size: tuple[int, int]) -> None:
        self.cfg, self.size = cfg, size
        self.modules = {"map": Affine(size).to(device)}
        self.optimizers = {"map": torch.optim.Adam(self.modules["map"].parameters(), cfg.train.lr)}
        self.ema: dict[str, Any] = {}

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        losses = []
        for mb in ctx.micro_batches(batch):
            with ctx.autocast():
                loss = (self.modules["map"](mb["source"]) - mb["target"]).abs().mean()
            ctx.backward(loss)
            losses.append(loss.item())
        ctx.optimizer_step("map")
        return {"l1": sum(losses) / len(losses)}

    def metadata(self) -> dict[str, Any]:
        return {"source_domain": self.cfg.data.source_domain, "target_domain": self.cfg.data.target_domain}


class AffineTranslator(TranslatorBase):
    method = "toy_affine"

    def __init__(self, net: Affine, size: tuple[int, int], source: str, target: str) -> None:
        self.net, self.image_size = net.eval().requires_grad_(False), size
        self.source_domain, self.target_domain = source, target

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.net.to(x.device)(x)


def training_data(data: Path, cfg: ToyConfig) -> Any:
    return unpaired_frames(data, cfg.data, cfg.train.seed)


def build(cfg: ToyConfig, dataset: Any, device: torch.device, rank: int = 0) -> ToyAffine:
    return ToyAffine(cfg, device, tuple(dataset[0]["source"].shape[-2:]))


def load(ckpt: ModelCheckpoint, device: torch.device | None = None) -> AffineTranslator:
    cfg = from_dict(ToyConfig, ckpt.state["config"])
    meta = ckpt.state["metadata"]
    size = tuple(meta["image_size"])
    net = load_module(ckpt, "map", Affine(size))
    return AffineTranslator(net, size, meta["source_domain"], meta["target_domain"])


register(MethodSpec(name="toy_affine", kind="translator", config=ToyConfig, dataset=training_data, build=build,
                    load=load, summary="A per-pixel affine map trained by L1 (test plug-in)."))
