"""Train a plane classifier: class-balanced batches, optional classical augmentation, early stopping on the
validation macro-F1 (the best weights are kept). One explicit loop; randomness from one seeded generator."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sonoshift.config import NonNegFloat, NonNegInt, PosFloat, PosInt, Seed, UnitFloat, Validated
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.augment import AugmentConfig, augment
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.judges.plane.scores import summarize
from sonoshift.progress import make_progress


@dataclass(frozen=True)
class ClassifierTrainConfig(Validated):
    """Adam steps (at most ``steps``), evaluation every ``eval_every`` steps, stop after ``patience`` evaluations
    without a better validation macro-F1. ``balance``: draw every class equally often."""

    steps: PosInt = 1200
    batch_size: PosInt = 32
    lr: PosFloat = 2e-3
    weight_decay: NonNegFloat = 1e-4
    label_smoothing: UnitFloat = 0.05
    balance: bool = True
    eval_every: PosInt = 50
    patience: NonNegInt = 6
    seed: Seed = 0


@dataclass(frozen=True)
class ClassifierConfig(Validated):
    """A plane classifier: which label and classes, input size, network, training and augmentation."""

    image_size: PosInt = 128
    label: str = "plane"
    classes: tuple[str, ...] = ()  # empty: every label of the training frames (sorted)
    domains: tuple[str, ...] = ()  # empty: every domain of the dataset
    net: NetConfig = field(default_factory=NetConfig)
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@torch.no_grad()
def predict_proba(model: PlaneNet, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, C) float64 for inputs (N, 1, S, S) in [-1, 1], on the model's device."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = [torch.softmax(model(x[i : i + batch_size].to(dev)).float(), 1).cpu() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out).double().numpy() if out else np.zeros((0, model.head.out_features))


def _sampler_weights(y: np.ndarray, balance: bool) -> torch.Tensor:
    if not balance:
        return torch.ones(len(y), dtype=torch.float64)
    counts = np.bincount(y)
    return torch.from_numpy(1.0 / counts[y]).double()


def train_classifier(
    x: torch.Tensor, y: np.ndarray, classes: tuple[str, ...], cfg: ClassifierConfig,
    x_val: torch.Tensor | None = None, y_val: np.ndarray | None = None, *, progress: bool = True,
) -> tuple[PlaneNet, dict]:
    """Train from scratch on ``x`` (N, 1, S, S) in [-1, 1] with class ids ``y`` (N,).

    With a validation set, the weights with the best validation macro-F1 are returned and training stops after
    ``patience`` evaluations without a gain. Returns (model in eval mode on ``x.device``, info dict: steps run,
    best step, validation history, best validation summary). Same seed and data -> same weights (CPU).
    """
    tc = cfg.train
    if len(x) == 0:
        raise SonoshiftError("there are no training frames for the plane classifier.")
    if len(set(y.tolist())) < 2:
        raise SonoshiftError("the plane classifier needs training frames of at least 2 classes.")
    # the global RNG (weight init, dropout) is seeded inside a fork, so the same seed gives the same model
    # whatever ran before in the process, and the caller's RNG state is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(tc.seed))
        return _train(x, y, classes, cfg, x_val, y_val, progress)


def _train(
    x: torch.Tensor, y: np.ndarray, classes: tuple[str, ...], cfg: ClassifierConfig,
    x_val: torch.Tensor | None, y_val: np.ndarray | None, progress: bool,
) -> tuple[PlaneNet, dict]:
    tc = cfg.train
    dev = x.device
    g = torch.Generator().manual_seed(int(tc.seed))
    model = PlaneNet(len(classes), cfg.net).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(tc.steps, 1))
    weights = _sampler_weights(y, tc.balance)
    yt = torch.from_numpy(y)
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    best = (-1.0, 0, None)  # (macro-F1, step, state)
    history, since_best, losses, step = [], 0, [], 0
    model.train()
    with make_progress() as p:
        task = p.add_task("train plane classifier", total=tc.steps, info="", visible=progress)
        for step in range(1, tc.steps + 1):
            idx = torch.multinomial(weights, min(tc.batch_size, len(y)), replacement=True, generator=g)
            xb = augment(x[idx.to(dev)], cfg.augment, g)
            loss = F.cross_entropy(model(xb), yt[idx].to(dev), label_smoothing=tc.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            p.advance(task)
            if has_val and (step % tc.eval_every == 0 or step == tc.steps):
                s = summarize(y_val, predict_proba(model, x_val), classes)
                history.append({"step": step, "loss": float(np.mean(losses[-tc.eval_every:])),
                                "val_accuracy": s["accuracy"], "val_macro_f1": s["macro_f1"]})
                p.update(task, info=f"val macro-F1 {s['macro_f1']:.3f}")
                if s["macro_f1"] > best[0]:
                    best, since_best = (s["macro_f1"], step, copy.deepcopy(model.state_dict())), 0
                else:
                    since_best += 1
                    if since_best >= tc.patience:
                        break
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    info = {"steps_run": step, "best_step": best[1] if has_val else step, "history": history,
            "loss_last": float(np.mean(losses[-50:])), "train_frames": int(len(y)),
            "train_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)}}
    if has_val:
        info["validation"] = {k: v for k, v in summarize(y_val, predict_proba(model, x_val), classes).items()}
    return model, info
