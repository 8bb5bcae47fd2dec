"""Frozen validity critics, fitted once per label regime on that regime's labelled frames, never updated.

- plane: a PlaneNet (another seed than the downstream model); its probability of the conditioned plane.
- GA consistency (head candidates): the critic GA regressor's estimate must lie inside the INTERGROWTH-21st band
  of the conditioned GA, i.e. between the GAs (INTERGROWTH-21st 2016, GA from HC) of the 2.5th and 97.5th HC
  centiles (INTERGROWTH-21st 2014) at the conditioned GA.
- realism, two checks that real frames pass ~95% of the time (thresholds from real validation frames): the mean
  Euclidean distance of the L2-normalised critic embedding to its k nearest real training frames, and the
  Bhattacharyya coefficient of the image's intensity histogram with the pooled real training histogram (a plane
  classifier trained on a few dozen frames can embed pure speckle-like noise near real frames; the histogram
  cannot be fooled that way).
- memorization guard: sonoshift.synth's ``CopyGuard`` over the regime's real training frames (the generator's
  training images): shift-tolerant pixel distance at 32 px (up to 1 px shift), threshold = the
  ``memo_percentile`` of every training frame's nearest distance to frames of OTHER patients (of other videos
  when the regime holds one patient only). The critic embedding is not used for it: trained to forget
  everything but the plane, it places mildly perturbed copies as far from their source as other patients'
  frames (issue 15). The guard holds no learned state: it is rebuilt from the regime's frames when a run
  resumes, and its threshold must equal the one written at setup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sonoshift.biometry.intergrowth import ga_weeks_from_hc, hc_centile
from sonoshift.difusal.config import Critics as CriticCfg
from sonoshift.difusal.config import Downstream
from sonoshift.difusal.data import Frames
from sonoshift.difusal.downstream import ga_of, one_plane, plane_probs, train_ga, train_plane
from sonoshift.judges.ga.regressor import GaRegressorNet
from sonoshift.judges.plane.net import PlaneNet
from sonoshift.metrics.fid import fid_from_features, kid_from_features
from sonoshift.metrics.histogram import bc_from_counts, histograms
from sonoshift.synth.evaluation.memorization import CopyGuard, normalise


def ga_band(ga_weeks: np.ndarray, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) GA weeks consistent with a fetus of GA ``ga_weeks``: GA from HC at the band's centiles."""
    g = np.asarray(ga_weeks, np.float64)
    return ga_weeks_from_hc(hc_centile(g, band[0])), ga_weeks_from_hc(hc_centile(g, band[1]))


@torch.no_grad()
def embed(net: PlaneNet, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """L2-normalised penultimate features (N, D) of the critic classifier."""
    net.eval()
    return normalise(torch.cat([net.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]))


def knn_distance(query: torch.Tensor, ref: torch.Tensor, k: int, exclude_self: bool = False) -> np.ndarray:
    """Mean distance of each query row to its k nearest rows of ``ref`` (N,)."""
    d = torch.cdist(query, ref)
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    k = min(k, ref.shape[0] - int(exclude_self))
    return d.topk(k, dim=1, largest=False).values.mean(1).double().numpy()


def intensity_hist(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Intensity counts (N, bins) of images in [-1, 1]."""
    return histograms(((x + 1) / 2).clamp(0, 1), bins=bins)


def hist_bc(x: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """Bhattacharyya coefficient (N,) of each image's histogram with the reference counts ``ref`` (bins,)."""
    h = intensity_hist(x, ref.shape[0])
    return bc_from_counts(h, ref.expand_as(h).to(h.dtype)).double().numpy()


@dataclass
class Critics:
    """The frozen critics of one label regime and their calibrated thresholds."""

    plane: PlaneNet
    ga: GaRegressorNet | None
    train_emb: torch.Tensor
    realism_threshold: float
    guard: CopyGuard
    cfg: CriticCfg
    train_hist: torch.Tensor
    hist_threshold: float
    ga_slack_weeks: float = 0.0

    @property
    def memo_threshold(self) -> float:
        return float(self.guard.threshold)

    def score(self, x: torch.Tensor, plane_ids: np.ndarray, ga_cond: np.ndarray, head: int) -> pd.DataFrame:
        """One row per candidate: critic plane confidence, GA estimate and band, realism and nearest-copy
        distances, and the pass/fail flag of every check."""
        probs = plane_probs(self.plane, x)
        conf = probs[np.arange(len(plane_ids)), plane_ids]
        ga_est = ga_of(self.ga, x)
        lo, hi = ga_band(ga_cond, self.cfg.ga_band)
        lo, hi = lo - self.ga_slack_weeks, hi + self.ga_slack_weeks
        is_head = plane_ids == head
        emb = embed(self.plane, x)
        realism = knn_distance(emb, self.train_emb, self.cfg.knn)
        nn_d, nn_i = self.guard.nearest(x)
        nn_d = nn_d.double().numpy()
        hbc = hist_bc(x, self.train_hist)
        ga_ok = ~is_head | (np.isnan(ga_est) | ((ga_est >= lo) & (ga_est <= hi)))
        return pd.DataFrame({
            "critic_conf": conf, "critic_plane_ok": conf >= self.cfg.plane_conf,
            "critic_ga": np.where(is_head, ga_est, np.nan), "ga_band_lo": np.where(is_head, lo, np.nan),
            "ga_band_hi": np.where(is_head, hi, np.nan), "ga_ok": ga_ok,
            "realism_knn": realism, "histogram_bc": hbc,
            "realism_ok": (realism <= self.realism_threshold) & (hbc >= self.hist_threshold),
            "nearest_train": nn_d, "nearest_train_index": nn_i.numpy(), "near_copy": nn_d < self.memo_threshold,
        })


def fit_critics(train: Frames, val: Frames, n_classes: int, head: int, d: Downstream, cfg: CriticCfg, seed: int,
                guard_frames: Frames | None = None, plane: torch.nn.Module | None = None,
                extra_reference: Frames | None = None, unlabelled: Frames | None = None) -> Critics:
    """Critics trained on the regime's labelled frames ``train`` (seed offset 100 from the downstream models);
    ``val`` frames calibrate the realism threshold (images) and, with ``cfg.ga_slack`` "val_mae", the GA band's
    slack (the critic's mean |error| on the labelled validation heads). The memorization guard covers
    ``guard_frames`` (the generator's training images; default ``train``). ``plane``: an already-trained plane
    critic (judge_critic.py) instead of one fitted on ``train``. ``extra_reference``: unlabelled images (another
    domain) that join the realism references (embedding bank and pooled histogram), images only. ``unlabelled``:
    the images ``cfg.self_train`` may add to the plane critic's second fit (``self_trained``)."""
    ga = train_ga(train, head, d, seed + 100)
    if plane is None:
        plane = one_plane(ga) if n_classes == 1 else train_plane(train, n_classes, d, seed + 100)
        if cfg.self_train > 0 and n_classes > 1 and unlabelled is not None and len(unlabelled):
            plane = self_trained(plane, train, unlabelled, n_classes, d, seed + 100, cfg.self_train)
    ref = train.x if extra_reference is None or not len(extra_reference) else torch.cat([train.x, extra_reference.x])
    train_emb = embed(plane, ref)
    val_d = knn_distance(embed(plane, val.x), train_emb, cfg.knn)
    train_hist = intensity_hist(ref, cfg.hist_bins).sum(0)
    hist_thr = float(np.percentile(hist_bc(val.x, train_hist), 100 - cfg.realism_percentile))
    return Critics(plane, ga, train_emb, float(np.percentile(val_d, cfg.realism_percentile)),
                   copy_guard(train if guard_frames is None else guard_frames, cfg), cfg, train_hist, hist_thr,
                   ga_slack(ga, val, head) if cfg.ga_slack == "val_mae" else 0.0)


def self_trained(plane: PlaneNet, train: Frames, unlabelled: Frames, n_classes: int, d: Downstream, seed: int,
                 threshold: float) -> PlaneNet:
    """A plane classifier fitted again on ``train`` plus the ``unlabelled`` images to which ``plane`` gives at least
    ``threshold`` probability, each under ``plane``'s label (self-training: only ``train``'s labels are read)."""
    p = plane_probs(plane, unlabelled.x)
    sure = np.flatnonzero(p.max(1) >= threshold)
    if not len(sure):
        return plane
    taken = Frames(unlabelled.x[torch.from_numpy(sure)], p.argmax(1)[sure].astype(np.int64),
                   np.full(len(sure), np.nan), np.full(len(sure), "self-trained", dtype=object))
    return train_plane(Frames.concat([train, taken]), n_classes, d, seed)


def ga_slack(ga: GaRegressorNet | None, val: Frames, head: int) -> float:
    """Mean |critic GA - true GA| (weeks) on ``val``'s head frames with a known GA (0 without any, or no critic)."""
    m = np.flatnonzero((val.y == head) & np.isfinite(val.ga))
    if ga is None or not len(m):
        return 0.0
    return float(np.mean(np.abs(ga_of(ga, val.x[torch.from_numpy(m)]) - val.ga[m])))


def fidelity(critics: Critics, x: torch.Tensor) -> dict[str, float]:
    """FID and KID of images ``x`` against the regime's real training frames in the frozen critic's embedding
    (its penultimate features, L2-normalised; no ImageNet network is available offline); NaN below 2 images."""
    if x.shape[0] < 2:
        return {"fid": float("nan"), "kid": float("nan")}
    f, ref = embed(critics.plane, x).double(), critics.train_emb.double()
    n = min(f.shape[0], ref.shape[0])
    return {"fid": fid_from_features(f, ref), "kid": kid_from_features(f, ref, subsets=1, subset_size=n)[0]}


def copy_guard(train: Frames, cfg: CriticCfg) -> CopyGuard:
    """The memorization guard over ``train``'s images; neighbours of the same patient (with one patient only:
    of the same video) do not calibrate the threshold."""
    groups = train.patients
    if len(np.unique(groups)) < 2:
        if train.videos is None or len(np.unique(train.videos)) < 2:
            raise ValueError("the memorization guard needs frames of at least two patients or two videos")
        groups = train.videos
    return CopyGuard(train.x, list(groups), percentile=cfg.memo_percentile)


def near_copy_rate(critics: Critics, x: torch.Tensor) -> float:
    """Share of images whose nearest training frame (shift-tolerant pixels) is closer than the guard's threshold."""
    return float((critics.guard.nearest(x)[0] < critics.memo_threshold).float().mean())


__all__ = ["Critics", "copy_guard", "embed", "fidelity", "fit_critics", "ga_band", "ga_slack", "hist_bc", "knn_distance",
           "near_copy_rate", "self_trained"]
