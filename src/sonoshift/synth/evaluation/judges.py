"""The judges the synthesis evaluation needs, behind one small protocol, and a stand-in that it can train.

``Judges``: ``embed(x)`` (an ultrasound-domain embedding, (N, D)), ``feature_maps(x)`` (conv feature maps for a
perceptual distance), ``plane_logits(x)`` over ``planes``, ``ga_weeks(x)`` (GA read off the image), all on
images (N, 1, H, W) in [-1, 1]. Any object with these members plugs in (the project's plane classifier and GA
estimator, when they land, through a thin adapter).

``SmallJudges`` is the stand-in used until then, trained by :func:`train_judges` inside the evaluation only: a
4-level CNN on 64 x 64 frames with two heads on its pooled 128-d penultimate features: plane (cross-entropy,
planes drawn equally often) and GA (L1 on weeks, only on frames whose GA is known). Its penultimate features are
the embedding. GA of a synthetic image is read by this direct image -> GA regressor trained on REAL frames
(not on synthetic ones), so it judges the synthesizer rather than learning from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.progress import make_progress


class Judges(Protocol):
    """What the synthesis evaluation needs from the downstream models."""

    planes: tuple[str, ...]
    label: str

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def plane_logits(self, x: torch.Tensor) -> torch.Tensor: ...

    def ga_weeks(self, x: torch.Tensor) -> torch.Tensor: ...


class JudgeNet(nn.Module):
    """(N, 1, S, S) in [-1, 1] -> feature maps of 4 stride-2 conv blocks; pooled 128-d features; two heads."""

    def __init__(self, n_planes: int, width: int = 32) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 4 * width]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), nn.GroupNorm(8, chans[i + 1]), nn.SiLU(),
                nn.Conv2d(chans[i + 1], chans[i + 1], 3, padding=1), nn.GroupNorm(8, chans[i + 1]), nn.SiLU(),
            )
            for i in range(4)
        )
        self.plane = nn.Linear(chans[-1], n_planes)
        self.ga = nn.Linear(chans[-1], 1)

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for b in self.blocks:
            x = b(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.maps(x)[-1].mean(dim=(2, 3))
        return f, self.plane(f), self.ga(f)[:, 0]


class SmallJudges:
    """A trained :class:`JudgeNet` as :class:`Judges`. GA head outputs (weeks - ga_mean) / ga_std."""

    def __init__(self, net: JudgeNet, planes: Sequence[str], size: int, ga_mean: float, ga_std: float) -> None:
        self.net = net.eval().requires_grad_(False)
        self.planes, self.size = tuple(planes), int(size)
        self.ga_mean, self.ga_std = float(ga_mean), float(ga_std)
        self.label = "sonoshift SmallJudges (plane + GA CNN trained on the real training frames by evaluate-synth)"

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.no_grad()
    def _run(self, x: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = [self.net(self._prep(x[i:i + batch])) for i in range(0, x.shape[0], batch)]
        return tuple(torch.cat([o[k] for o in outs]) for k in range(3))  # type: ignore[return-value]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    @torch.no_grad()
    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.maps(self._prep(x))

    def plane_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[1]

    def ga_weeks(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[2] * self.ga_std + self.ga_mean

    def save(self, folder: str | Path) -> None:
        """``judges.safetensors`` + ``judges.json`` in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(folder / "judges.safetensors"))
        meta = {"planes": list(self.planes), "size": self.size, "ga_mean": self.ga_mean, "ga_std": self.ga_std,
                "width": self.net.blocks[0][0].out_channels}
        (folder / "judges.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_judges(folder: str | Path) -> SmallJudges:
    """Judges saved by :meth:`SmallJudges.save`."""
    folder = Path(folder)
    if not (folder / "judges.json").is_file():
        raise SonoshiftError(f"{folder} holds no judges (judges.json); train them with evaluate-synth first.")
    meta = json.loads((folder / "judges.json").read_text(encoding="utf-8"))
    net = JudgeNet(len(meta["planes"]), meta["width"])
    net.load_state_dict(load_file(str(folder / "judges.safetensors")))
    return SmallJudges(net, meta["planes"], meta["size"], meta["ga_mean"], meta["ga_std"])


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 4 px and a gain of 0.9-1.1 (both per image), so the judges do not key on exact
    pixel positions or grey levels."""
    n = x.shape[0]
    shifts = torch.randint(-4, 5, (n, 2), generator=g)
    gain = 0.9 + 0.2 * torch.rand(n, generator=g)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = torch.roll(x[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(-2, -1))
    return ((out + 1) * gain.view(n, 1, 1, 1) - 1).clamp(-1, 1)


def train_judges(
    images: torch.Tensor, plane: torch.Tensor, ga: torch.Tensor, planes: Sequence[str], *, steps: int = 800,
    batch: int = 32, lr: float = 2e-3, width: int = 32, seed: int = 0, progress: bool = True,
) -> SmallJudges:
    """Train :class:`SmallJudges` on REAL frames: images (N, 1, S, S) in [-1, 1], plane (N,) index into
    ``planes`` (-1 unknown), ga (N,) weeks (NaN unknown). Planes are drawn equally often; GA loss only where
    known. Deterministic for a given ``seed``."""
    known = plane >= 0
    if int(known.sum()) == 0:
        raise SonoshiftError("the judges need frames with plane labels.")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = JudgeNet(len(planes), width)
    has_ga = torch.isfinite(ga)
    ga_mean = float(ga[has_ga].mean()) if has_ga.any() else 0.0
    ga_std = float(ga[has_ga].std()) if int(has_ga.sum()) > 1 else 1.0
    groups = [torch.nonzero(plane == k)[:, 0] for k in range(len(planes))]
    groups = [grp for grp in groups if len(grp)]
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    bar = make_progress() if progress else None
    net.train()
    with bar if bar is not None else _Null():
        task = bar.add_task("judges", total=steps, info="") if bar is not None else None
        for step in range(steps):
            for grp_lr in opt.param_groups:
                grp_lr["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            which = torch.randint(0, len(groups), (batch,), generator=g)
            idx = torch.stack([groups[w][torch.randint(0, len(groups[w]), (1,), generator=g)][0] for w in which])
            x = _augment(images[idx].float(), g)
            _, logits, ga_pred = net(x)
            loss = F.cross_entropy(logits, plane[idx])
            m = has_ga[idx]
            if m.any():
                loss = loss + F.l1_loss(ga_pred[m], (ga[idx][m] - ga_mean) / ga_std)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(task, completed=step + 1, info=f"loss={float(loss):.3f}")
    return SmallJudges(net, planes, images.shape[-1], ga_mean, ga_std)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["JudgeNet", "Judges", "SmallJudges", "load_judges", "train_judges"]
