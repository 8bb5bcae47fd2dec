"""Direct image -> GA regressor (for images without a pixel size): the plane classifier's compact CNN with one
output, trained on HC18 training subjects with L1 loss on GA (weeks, Hadlock from the official HC), scored by
GA error per trimester and the valid prediction rate (true HC inside the INTERGROWTH-21st 2.5th-97.5th centile
band for the predicted GA). Checkpoints go through the engine's checkpoint code (method ``ga_regressor``)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import sonoshift
from sonoshift.atomic import atomic_write_text
from sonoshift.biometry.intergrowth import valid_prediction
from sonoshift.config import from_dict, to_dict
from sonoshift.downstream.hc18 import load_hc18_table, split_subjects
from sonoshift.io.images import read_gray
from sonoshift.engine.checkpoint import load_module, module_tensors, read_model, write_checkpoint
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc as hadlock_ga_from_hc
from sonoshift.judges.ga.estimator import frames_to_batch
from sonoshift.judges.ga.hc18_report import TRIMESTERS
from sonoshift.judges.plane.augment import AugmentConfig, augment
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.progress import make_progress

METHOD = "ga_regressor"
GA_CENTRE, GA_SCALE = 25.0, 10.0  # the network predicts (GA - 25) / 10


@dataclass(frozen=True)
class RegressorConfig:
    """Data (HC18 folder, the GA estimator's subject split), network, training, augmentation (no zoom: size
    is the signal)."""

    data_dir: str = "../shared/data/hc18"
    val_fraction: float = 0.2
    split_seed: int = 0
    image_size: int = 96
    net: NetConfig = field(default_factory=NetConfig)
    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(rotate_deg=30.0, scale=0.0))


class GaRegressorNet(nn.Module):
    """(B, 1, S, S) in [-1, 1] -> GA in weeks (B,)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.backbone = PlaneNet(2, cfg)
        self.out = nn.Linear(self.backbone.feature_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.backbone.dropout(self.backbone.features(x)))[:, 0] * GA_SCALE + GA_CENTRE


@torch.no_grad()
def predict_ga(model: GaRegressorNet, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """GA in weeks (N,) for inputs (N, 1, S, S) in [-1, 1] (mean with the flipped image)."""
    model.eval()
    out = [(model(x[i : i + batch_size]) + model(x[i : i + batch_size].flip(-1))) / 2
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def score(ga_pred: np.ndarray, hc_true: np.ndarray) -> pd.DataFrame:
    """Per image: true GA (Hadlock), error in days, trimester, valid prediction."""
    ga_true = hadlock_ga_from_hc(hc_true)
    return pd.DataFrame({
        "ga_pred_weeks": ga_pred, "ga_true_weeks": ga_true, "ga_err_days": (ga_pred - ga_true) * 7,
        "trimester": [next(n for n, lo, hi in TRIMESTERS if lo <= g < hi) for g in ga_true],
        "valid": valid_prediction(hc_true, ga_pred), "hc_true_mm": hc_true,
    })


def summarize_scores(t: pd.DataFrame) -> dict:
    out = {"images": int(len(t)), "valid_prediction_rate": float(t["valid"].mean()),
           "ga_abs_days_mean": float(t["ga_err_days"].abs().mean())}
    for name, _, _ in TRIMESTERS:
        d = t.loc[t["trimester"] == name, "ga_err_days"]
        out[f"{name}_n"] = int(len(d))
        out[f"{name}_abs_days_mean"] = float(d.abs().mean()) if len(d) else float("nan")
        out[f"{name}_abs_days_std"] = float(d.abs().std(ddof=0)) if len(d) else float("nan")
        out[f"{name}_valid_rate"] = float(t.loc[t["trimester"] == name, "valid"].mean()) if len(d) else float("nan")
    return out


def train_regressor(cfg: RegressorConfig, out: str | Path, progress: bool = True) -> dict:
    """Train on HC18 training subjects for ``cfg.steps`` steps (the held-out subjects are scored once, at the
    end, never used for selection). Writes the checkpoint and ``validation.csv``; returns the held-out summary."""
    rows = load_hc18_table(cfg.data_dir)
    is_val = split_subjects(rows["subject"], cfg.val_fraction, cfg.split_seed)
    tr, va = rows[~is_val], rows[is_val]
    if tr.empty:
        raise SonoshiftError("no HC18 training images for the GA regressor.")
    x = frames_to_batch([read_gray(p) for p in tr["image_path"]], cfg.image_size)
    y = torch.from_numpy(hadlock_ga_from_hc(tr["hc_mm"].to_numpy())).float()
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = GaRegressorNet(cfg.net)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    model.train()
    with make_progress() as p:
        task = p.add_task("train GA regressor", total=cfg.steps, info="", visible=progress)
        for _ in range(cfg.steps):
            idx = torch.randint(len(y), (min(cfg.batch_size, len(y)),), generator=g)
            loss = F.l1_loss(model(augment(x[idx], cfg.augment, g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            p.advance(task)
    model.eval()
    summary: dict = {}
    table = pd.DataFrame()
    if len(va):
        xv = frames_to_batch([read_gray(p) for p in va["image_path"]], cfg.image_size)
        table = score(predict_ga(model, xv), va["hc_mm"].to_numpy()).assign(filename=list(va["filename"]))
        summary = summarize_scores(table)
    state = {"method": METHOD, "sonoshift_version": sonoshift.__version__, "image_size": cfg.image_size,
             "input_range": [-1.0, 1.0], "output": "GA weeks (Hadlock-equivalent)", "config": to_dict(cfg),
             "info": {"train_images": int(len(tr)), "val_files": list(va["filename"]), "validation": summary},
             "step": cfg.steps}
    write_checkpoint(Path(out), cfg.steps, model=module_tensors("model/regressor", copy.deepcopy(model.state_dict())),
                     train={}, state=state, keep_last=1)
    atomic_write_text(Path(out) / "regressor.json", json.dumps(state, indent=2) + "\n")
    if len(table):
        atomic_write_text(Path(out) / "validation.csv", table.to_csv(index=False))
    return summary


def load_regressor(path: str | Path) -> tuple[GaRegressorNet, int]:
    """(model, image size) of a regressor checkpoint."""
    ckpt = read_model(path)
    if ckpt.method != METHOD:
        raise SonoshiftError(f"checkpoint {ckpt.path} is a {ckpt.method!r} model, not a GA regressor.")
    cfg = from_dict(RegressorConfig, ckpt.state["config"])
    return load_module(ckpt, "regressor", GaRegressorNet(cfg.net), prefer_ema=False).eval(), cfg.image_size
