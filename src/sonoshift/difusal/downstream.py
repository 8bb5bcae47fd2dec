"""Train and apply the downstream models (and the critics, which use the same recipe with another seed).

Plane classifier: sonoshift.judges' PlaneNet, class-balanced batches, AdamW, cross-entropy, a fixed step count
(LR decayed to 0 by a cosine unless ``downstream.lr_schedule: constant``).
GA estimator: sonoshift.judges' GaRegressorNet (image -> GA weeks) on the head frames with a known GA, L1 loss.
Both train from scratch each time (same seed -> same model), so arms differ only in their training frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sonoshift.difusal.config import Downstream
from sonoshift.difusal.data import Frames
from sonoshift.engine.schedules import cosine_factor
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.regressor import GaRegressorNet, predict_ga
from sonoshift.judges.plane.adapt import recompute_batchnorm
from sonoshift.judges.plane.augment import AugmentConfig, augment
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.judges.plane.train import predict_proba
from sonoshift.judges.plane.zoom import zoom_ensemble


@dataclass
class Models:
    """A plane classifier and a GA regressor (None when there were no head frames with a GA)."""

    plane: PlaneNet
    ga: GaRegressorNet | None


def _net_cfg(d: Downstream) -> NetConfig:
    return NetConfig(stem=d.stem, widths=tuple(d.widths), dropout=0.1)


def _set_lr(opt: torch.optim.Optimizer, d: Downstream, step: int, total: int) -> None:
    """The LR of ``step`` (0-based) of ``total``: ``d.lr``, times the cosine factor when ``d.lr_schedule`` says so."""
    lr = d.lr * (cosine_factor(step, total) if d.lr_schedule == "cosine" else 1.0)
    for group in opt.param_groups:
        group["lr"] = lr


def train_plane(f: Frames, n_classes: int, d: Downstream, seed: int, *, classical_aug: bool = False) -> PlaneNet:
    """A PlaneNet trained on ``f`` with every class drawn equally often (classes absent from ``f`` are skipped)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = PlaneNet(n_classes, _net_cfg(d))
    opt = torch.optim.AdamW(net.parameters(), lr=d.lr, weight_decay=1e-4)
    counts = np.bincount(f.y, minlength=n_classes).astype(np.float64)
    w = torch.from_numpy(np.where(counts[f.y] > 0, 1.0 / counts[f.y], 0.0))
    aug = AugmentConfig()
    y = torch.from_numpy(f.y)
    net.train()
    for step in range(d.steps):
        _set_lr(opt, d, step, d.steps)
        idx = torch.multinomial(w, d.batch_size, replacement=True, generator=g)
        x = f.x[idx]
        if classical_aug:
            x = augment(x, aug, g)
        loss = F.cross_entropy(net(x), y[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


class OnePlane(torch.nn.Module):
    """The plane classifier of a one-plane study (HC18: heads only, ``data.planes`` of length 1), where there is
    nothing to classify: every frame gets probability 1 for the plane (a zero linear head, entropy 0), and its
    features, the embedding the realism critic and the fidelity scores use, are those of the GA regressor's
    backbone (an ultrasound embedding trained on the same labels) instead of an untrained classifier's."""

    def __init__(self, ga: GaRegressorNet) -> None:
        super().__init__()
        self.ga = ga
        self.head = torch.nn.Linear(ga.backbone.feature_dim, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.ga.backbone.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def one_plane(ga: GaRegressorNet | None) -> OnePlane:
    """:class:`OnePlane` over ``ga``; a one-plane study without a GA regressor has no downstream model at all."""
    if ga is None:
        raise SonoshiftError("a one-plane study (data.planes has one plane) needs head frames with a known GA: the "
                             "GA regressor is its only downstream model, and this training set has fewer than 2.")
    return OnePlane(ga).eval()


def train_ga(f: Frames, head: int, d: Downstream, seed: int, *, classical_aug: bool = False
             ) -> GaRegressorNet | None:
    """A GA regressor on the head frames of ``f`` with a known GA (None when there are fewer than 2)."""
    idx_all = np.flatnonzero((f.y == head) & np.isfinite(f.ga))
    if len(idx_all) < 2:
        return None
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 1)
    net = GaRegressorNet(_net_cfg(d))
    opt = torch.optim.AdamW(net.parameters(), lr=d.lr, weight_decay=1e-4)
    x_all, ga_all = f.x[torch.from_numpy(idx_all)], torch.from_numpy(f.ga[idx_all]).float()
    aug = AugmentConfig(rotate_deg=20.0, scale=0.0)  # no zoom: size is the GA signal
    net.train()
    for step in range(d.ga_steps):
        _set_lr(opt, d, step, d.ga_steps)
        idx = torch.randint(0, len(idx_all), (d.batch_size,), generator=g)
        x = x_all[idx]
        if classical_aug:
            x = augment(x, aug, g)
        loss = F.l1_loss(net(x), ga_all[idx]) / 10.0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def train_models(f: Frames, n_classes: int, head: int, d: Downstream, seed: int, *, classical_aug: bool = False
                 ) -> Models:
    """Both downstream models on ``f`` (one plane: the GA regressor and :class:`OnePlane` over it)."""
    ga = train_ga(f, head, d, seed, classical_aug=classical_aug)
    if n_classes == 1:
        return Models(one_plane(ga), ga)
    return Models(train_plane(f, n_classes, d, seed, classical_aug=classical_aug), ga)


def adapt_models(m: Models, x: torch.Tensor, zooms: tuple[float, ...] = ()) -> Models:
    """AdaBN (``judges.plane.adapt``): the plane classifier re-normalized on the unlabelled frames ``x`` (its
    BatchNorm statistics re-estimated, every weight kept); with ``zooms``, a test-time zoom ensemble re-normalized
    at each zoom (``judges.plane.zoom``); the GA regressor as it is."""
    if isinstance(m.plane, OnePlane):
        raise SonoshiftError("data.adapt_bn re-normalizes a plane classifier; this study has one plane.")
    return Models(zoom_ensemble(m.plane, zooms, x) if zooms else recompute_batchnorm(m.plane, x), m.ga)


@torch.no_grad()
def plane_probs(net: PlaneNet, x: torch.Tensor) -> np.ndarray:
    """Softmax probabilities (N, C)."""
    return predict_proba(net, x)


def ga_of(net: GaRegressorNet | None, x: torch.Tensor) -> np.ndarray:
    """GA in weeks (N,) (flip-averaged); NaN everywhere without a regressor."""
    if net is None:
        return np.full(x.shape[0], np.nan)
    return predict_ga(net, x)


__all__ = ["Models", "OnePlane", "adapt_models", "ga_of", "one_plane", "plane_probs", "train_ga", "train_models",
           "train_plane"]
