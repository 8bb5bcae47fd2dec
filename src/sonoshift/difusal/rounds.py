"""The DiFUSAL run: per label regime a setup stage, then for every arm round 0 and rounds 1..R, each a
resumable stage written atomically under RUN/regime_<pct>/<arm>/round_<k>/ (a killed run leaves no half-written
round; running again skips every finished one and continues from the last).

One round of a loop arm (arms.py): (1) weakness per plane and GA bin from the current models on the regime's
validation frames; (2) allocation of the budget with a floor per condition; (3) candidates from the arm's
generator scored by the frozen critics; (4) selection (validity: critics; hardness: current models) with a
reason per candidate; (5) downstream models retrained on real + every accepted image so far, generator
fine-tuned on this round's accepted images, memorization guard re-checked on fresh samples; (6) test scores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from sonoshift.atomic import atomic_dir, atomic_write_text
from sonoshift.config import save_config, to_dict
from sonoshift.difusal import generator as gen_mod
from sonoshift.difusal import pseudo
from sonoshift.difusal.allocation import allocate, uniform
from sonoshift.difusal.arms import ARMS, Arm, run_order
from sonoshift.difusal.config import KNOWN_ARMS, DifusalConfig
from sonoshift.difusal.critics import Critics, copy_guard, fidelity, fit_critics, near_copy_rate
from sonoshift.difusal.data import Frames, cap_per_class, load_split, regime_split, unlabelled_frames
from sonoshift.difusal.fan import apply_fan, fan_masks
from sonoshift.difusal.init_images import draw_starts
from sonoshift.difusal.judge_critic import load_judge_critic
from sonoshift.difusal.downstream import (Models, OnePlane, _net_cfg, adapt_models, ga_of, one_plane, plane_probs,
                                         train_models)
from sonoshift.difusal.evaluation import evaluate
from sonoshift.difusal.selection import REASONS, select
from sonoshift.difusal.test_variants import predictions_file
from sonoshift.difusal.weakness import bin_index, condition_weakness, ga_weakness, plane_weakness
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.regressor import GaRegressorNet
from sonoshift.judges.plane.net import PlaneNet
from sonoshift.progress import track


@dataclass
class Regime:
    """The frames one label regime may see (train, val: its labelled share) and the common test split."""

    name: str
    fraction: float
    train: Frames
    val: Frames
    test: Frames
    unlabelled: Frames  # images of the other training patients, labels stripped (generator.unlabelled > 0)
    extra: Frames | None = None  # images of data.unlabelled_path (another domain), labels never read
    test_harmonized: Frames | None = None  # the test frames translated by data.harmonizer
    adapt: Frames | None = None  # data.adapt_bn: the unlabelled images the plane classifiers are re-normalized on
    adapt_zooms: tuple[float, ...] = ()  # data.adapt_zooms: also as a zoom ensemble re-normalized at each zoom
    translated: Frames | None = None  # the labelled train frames in the test domain's look (the translated arms)

    @property
    def _extra(self) -> list[Frames]:
        return [] if self.extra is None else [self.extra]

    @property
    def generator_frames(self) -> Frames:
        """Every real image the generator trains on (what the memorization guard must cover)."""
        return Frames.concat([self.train, self.unlabelled, *self._extra])

    @property
    def generator_unlabelled(self) -> Frames:
        """The images the generator trains on without labels (other training patients + data.unlabelled_path)."""
        return Frames.concat([self.unlabelled, *self._extra])

    @property
    def fan_frames(self) -> Frames:
        """The real frames whose fans mask the candidates (labelled training frames + data.unlabelled_path)."""
        return Frames.concat([self.train, *self._extra])

    @property
    def has_ga(self) -> bool:
        """Whether any labelled training frame has a GA (else the generator samples with the null GA token)."""
        return bool(np.isfinite(self.train.ga).any())


PREDICTIONS = "test_predictions.npz"


def regime_name(fraction: float) -> str:
    return f"regime_{round(100 * fraction):03d}"


def check_config(cfg: DifusalConfig) -> None:
    """One clear sentence for a config the loop cannot run."""
    bad = [a for a in cfg.arms if a not in ARMS]
    if bad:
        raise SonoshiftError(f"unknown arm {bad[0]!r} in arms: (known: {', '.join(ARMS)}).")
    for a in cfg.arms:
        if ARMS[a].lender and ARMS[a].lender not in cfg.arms:
            raise SonoshiftError(f"arm {a!r} needs arm {ARMS[a].lender!r} in arms: (it uses its candidates).")
        if ARMS[a].translated and not cfg.data.harmonizer:
            raise SonoshiftError(f"arm {a!r} needs data.harmonizer (a CycleGAN test -> training domain run whose "
                                 "reverse generator translates the labelled frames).")
    if cfg.data.head_plane not in cfg.data.planes:
        raise SonoshiftError(f"data.head_plane {cfg.data.head_plane!r} is not in data.planes.")
    bg = cfg.data.background_plane
    if bg and (bg not in cfg.data.planes or bg == cfg.data.head_plane or len(cfg.data.planes) < 2):
        raise SonoshiftError(f"data.background_plane {bg!r} must be one of data.planes other than the head plane.")
    if cfg.critics.plane_checkpoint and any(f < 1 for f in cfg.label_fractions):
        raise SonoshiftError("critics.plane_checkpoint (a classifier trained elsewhere) is only allowed when every "
                             "label regime keeps all labels (label_fractions all 1.0): it may have seen labels "
                             "a smaller regime does not keep.")
    if cfg.loop.rounds < 1 or not cfg.label_fractions:
        raise SonoshiftError("loop.rounds must be >= 1 and label_fractions must not be empty.")
    if any(not 0 < f <= 1 for f in cfg.label_fractions):
        raise SonoshiftError(f"label_fractions must lie in (0, 1], got {list(cfg.label_fractions)}.")
    if cfg.loop.init_strength > 0 and not (cfg.generator.unlabelled or cfg.data.unlabelled_path):
        raise SonoshiftError("loop.init_strength > 0 starts candidates from unlabelled images: set "
                             "generator.unlabelled > 0 or data.unlabelled_path.")
    n_cond = len(generated_planes(cfg)) * (len(cfg.loop.ga_edges) - 1)
    if cfg.loop.floor * n_cond > cfg.loop.budget:
        raise SonoshiftError(f"loop.budget {cfg.loop.budget} is below loop.floor x {n_cond} conditions.")


def generated_planes(cfg: DifusalConfig) -> list[int]:
    """Ids of the planes the loop generates candidates for (all but ``data.background_plane``)."""
    return [i for i, p in enumerate(cfg.data.planes) if p != cfg.data.background_plane]


def allocation_for(cfg: DifusalConfig, arm: Arm, w: np.ndarray) -> np.ndarray:
    """Candidates per (plane, GA bin): the arm's rule over the generated planes, 0 for the background plane."""
    rows = generated_planes(cfg)
    out = np.zeros(w.shape, np.int64)
    lp = cfg.loop
    out[rows] = (allocate(w[rows], lp.budget, lp.floor) if arm.allocation == "weakness"
                 else uniform(w[rows].shape, lp.budget))
    return out


# ---- saving and loading (safetensors weights, numpy image sets) ----
def _save_net(net: torch.nn.Module | None, path: Path) -> None:
    if net is not None:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def _prefix(i: int) -> str:
    return "" if i == 0 else f"seed{i}_"


def _save_models(models: list[Models], folder: Path) -> None:
    """Seed 0 as plane|ga.safetensors (the loop's current models), seed i > 0 as seed<i>_plane|ga.safetensors."""
    for i, m in enumerate(models):
        if not isinstance(m.plane, OnePlane):  # a one-plane study's classifier is rebuilt from the GA net
            _save_net(m.plane, folder / f"{_prefix(i)}plane.safetensors")
        _save_net(m.ga, folder / f"{_prefix(i)}ga.safetensors")


def _load_nets(folder: Path, cfg: DifusalConfig, prefix: str = "", plane_critic: str = ""
               ) -> tuple[PlaneNet, GaRegressorNet | None]:
    """The plane net (or the classifier ``plane_critic`` as a critic) and, when saved, the GA net
    (``<prefix>plane|ga.safetensors``), in eval mode."""
    ga = None
    if (folder / f"{prefix}ga.safetensors").is_file():
        ga = GaRegressorNet(_net_cfg(cfg.downstream))
        ga.load_state_dict(load_file(str(folder / f"{prefix}ga.safetensors")))
        ga.eval()
    if plane_critic:
        plane = load_judge_critic(plane_critic, tuple(cfg.data.planes))
    elif len(cfg.data.planes) == 1:
        plane = one_plane(ga)  # nothing saved for it: a zero head over the GA regressor's features
    else:
        plane = PlaneNet(len(cfg.data.planes), _net_cfg(cfg.downstream))
        plane.load_state_dict(load_file(str(folder / f"{prefix}plane.safetensors")))
    return plane.eval(), ga


def _load_models(folder: Path, cfg: DifusalConfig) -> list[Models]:
    """Every seed's models (seed 0 first)."""
    return [Models(*_load_nets(folder, cfg, _prefix(i))) for i in range(cfg.downstream.seeds)]


def augments(cfg: DifusalConfig, arm: Arm) -> bool:
    """Whether ``arm``'s downstream models train with classical augmentation: the classical_aug arm, and every
    synthetic arm when the config declares ``loop.synthetic_classical_aug``."""
    return arm.classical_aug or (arm.per_round and cfg.loop.synthetic_classical_aug)


def training_frames(reg: Regime, arm: Arm, synthetic: Frames | None = None) -> Frames:
    """What ``arm``'s downstream models train on: the regime's labelled real frames, their translated copies
    (translated arms), and the synthetic images accepted so far."""
    parts = [reg.train]
    if arm.translated:
        if reg.translated is None:
            raise SonoshiftError(f"arm {arm.name!r} needs data.harmonizer (the translated training frames).")
        parts.append(reg.translated)
    if synthetic is not None and len(synthetic):
        parts.append(synthetic)
    return Frames.concat(parts) if len(parts) > 1 else reg.train


def _train_all(f: Frames, cfg: DifusalConfig, classical_aug: bool) -> list[Models]:
    """The downstream models of every seed (seed i: ``cfg.seed + 7919 i``) on ``f``."""
    n, head = len(cfg.data.planes), cfg.data.planes.index(cfg.data.head_plane)
    return [train_models(f, n, head, cfg.downstream, cfg.seed + 7919 * i, classical_aug=classical_aug)
            for i in range(cfg.downstream.seeds)]


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def save_set(path: Path, x: torch.Tensor, y: np.ndarray, ga: np.ndarray) -> None:
    """Images as uint8 with plane ids and GA weeks (npz)."""
    np.savez_compressed(path, images=_to_uint8(x), plane=y, ga=ga)


def load_set(path: Path) -> Frames:
    """A set written by :func:`save_set` as Frames (patients "synthetic")."""
    z = np.load(path)
    x = torch.from_numpy(z["images"]).float().div(127.5).sub(1.0).unsqueeze(1)
    return Frames(x, z["plane"].astype(np.int64), z["ga"].astype(np.float64), np.full(len(z["plane"]), "synthetic"))


def _empty(size: int) -> Frames:
    return Frames(torch.zeros(0, 1, size, size), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, dtype=object))


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, default=float))


# ---- the stages ----
def load_regimes(cfg: DifusalConfig, data: str | Path) -> list[Regime]:
    """Train / val / test frames and every label regime's share of them."""
    from sonoshift.difusal.real_data import check_african_rule, test_sets, translated_train, unlabelled_images

    d, planes = cfg.data, tuple(cfg.data.planes)
    train, val = (load_split(data, s, planes, d.size, tuple(d.domains), d.fill_plane) for s in ("train", "val"))
    moved = translated_train(d, data) if any(ARMS[a].translated for a in cfg.arms) else None
    external, harmonized = test_sets(d, data)
    test = external if external is not None else load_split(data, "test", planes, d.size, tuple(d.domains), d.fill_plane)
    extra = unlabelled_images(d, data) if d.unlabelled_path else None
    if d.adapt_bn and extra is None:
        raise SonoshiftError("data.adapt_bn needs data.unlabelled_path (the unlabelled images of the test domain).")
    if d.adapt_zooms and not d.adapt_bn:
        raise SonoshiftError("data.adapt_zooms re-normalizes at each zoom: it needs data.adapt_bn: true.")
    check_african_rule(d.test_part, training=train, validation=val,
                       **({"unlabelled": extra} if extra is not None else {}))
    if cfg.generator.sample_domain:  # domain tokens: 1 for --data's frames, 2 for data.unlabelled_path's
        train, val = train.with_domain(1), val.with_domain(1)
        moved = moved.with_domain(1) if moved is not None else None
        extra = extra.with_domain(2) if extra is not None else None
    n = len(planes)
    keep = _cap_index(test, d.eval_per_class, n, cfg.seed + 7)
    test, harmonized = test.take(keep), (harmonized.take(keep) if harmonized is not None else None)
    out = []
    for i, frac in enumerate(cfg.label_fractions):
        pick, rest = _regime_index(train, frac, d.max_per_class, n, cfg.seed + 11 * i)
        tr = train.take(pick)
        va = regime_split(val, frac, d.eval_per_class, n, cfg.seed + 11 * i + 5)[0]
        un = (unlabelled_frames(train, rest, cfg.generator.unlabelled, cfg.seed + 11 * i + 3)
              if cfg.generator.unlabelled and rest else _empty(d.size))
        out.append(Regime(regime_name(frac), frac, tr, va, test, un, extra, harmonized,
                          extra if d.adapt_bn else None, tuple(d.adapt_zooms),
                          moved.take(pick) if moved is not None else None))
    return out


def _tagged(f: Frames) -> Frames:
    """``f``'s labels and patients with each frame's index in place of its GA (and a 1-pixel image): what a
    seeded draw keeps of it then says which indices it kept."""
    return Frames(f.x[:, :, :1, :1], f.y, np.arange(len(f), dtype=np.float64), f.patients)


def _regime_index(train: Frames, fraction: float, cap: int, n_classes: int, seed: int) -> tuple[np.ndarray, set[str]]:
    """The indices of :func:`regime_split`'s labelled frames in ``train`` (to take the same translated frames) and
    the ids of the patients whose labels the regime does not keep."""
    kept, rest = regime_split(_tagged(train), fraction, cap, n_classes, seed)
    return kept.ga.astype(np.int64), rest


def _cap_index(f: Frames, cap: int, n_classes: int, seed: int) -> np.ndarray:
    """The indices :func:`cap_per_class` keeps with ``default_rng(seed)`` (to take the same harmonized frames)."""
    return cap_per_class(_tagged(f), cap, n_classes, np.random.default_rng(seed)).ga.astype(np.int64)


def _setup(cfg: DifusalConfig, reg: Regime, folder: Path) -> None:
    n, head = len(cfg.data.planes), cfg.data.planes.index(cfg.data.head_plane)
    with atomic_dir(folder) as tmp:
        judge = (load_judge_critic(cfg.critics.plane_checkpoint, tuple(cfg.data.planes))
                 if cfg.critics.plane_checkpoint else None)
        critics = fit_critics(reg.train, reg.val, n, head, cfg.downstream, cfg.critics, cfg.seed,
                              guard_frames=reg.generator_frames, plane=judge, extra_reference=_realism_extra(cfg, reg),
                              unlabelled=reg.generator_unlabelled)
        if judge is None and not isinstance(critics.plane, OnePlane):
            _save_net(critics.plane, tmp / "critic_plane.safetensors")
        _save_net(critics.ga, tmp / "critic_ga.safetensors")
        save_file({"train_emb": critics.train_emb.contiguous(), "train_hist": critics.train_hist.contiguous()},
                  str(tmp / "critic_embedding.safetensors"))
        pipe = gen_mod.build(cfg.generator, tuple(cfg.data.planes), cfg.data.size, cfg.seed)
        unlabelled = generator_unlabelled(cfg, reg, critics.plane)
        gen_mod.train(pipe, reg.train, cfg.generator.pretrain_steps, cfg.generator, cfg.seed + 3,
                      unlabelled=unlabelled)
        gen_mod.save(pipe, tmp / "generator.safetensors")
        probe_rate = _probe(pipe, critics, cfg, cfg.seed + 9, fan_masks(reg.fan_frames), reg.has_ga)
        _write_json(tmp / "setup.json", {
            "n_train": len(reg.train), "n_val": len(reg.val), "n_test": len(reg.test),
            "n_unlabelled": len(reg.unlabelled), "n_extra_unlabelled": 0 if reg.extra is None else len(reg.extra),
            "pseudo_labels_per_plane": pseudo.counts(unlabelled, n),
            "critic_ga_slack_weeks": critics.ga_slack_weeks,
            "critic_plane": cfg.critics.plane_checkpoint or "fitted on the regime's frames",
            "critic_plane_val_accuracy": float((plane_probs(critics.plane, reg.val.x).argmax(1) == reg.val.y).mean()),
            "train_per_plane": np.bincount(reg.train.y, minlength=n).tolist(),
            "train_patients": sorted(set(reg.train.patients.tolist())),
            "realism_threshold": critics.realism_threshold, "memo_threshold": critics.memo_threshold,
            "histogram_bc_threshold": critics.hist_threshold,
            "memo_calibration": critics.guard.calibration,
            "fid_real_val": fidelity(critics, reg.val.x)["fid"], "kid_real_val": fidelity(critics, reg.val.x)["kid"],
            "near_copy_rate_generator": probe_rate})


def generator_unlabelled(cfg: DifusalConfig, reg: Regime, critic_plane: torch.nn.Module) -> Frames:
    """The images the generator trains on without the regime's labels; with ``generator.pseudo_label_conf`` > 0,
    pseudo-labelled by the frozen plane critic (difusal/pseudo.py; the background plane is never assigned)."""
    un, conf = reg.generator_unlabelled, cfg.generator.pseudo_label_conf
    if conf <= 0 or not len(un):
        return un
    bg = [cfg.data.planes.index(cfg.data.background_plane)] if cfg.data.background_plane else []
    return pseudo.pseudo_label(un, plane_probs(critic_plane, un.x), conf, bg)


def _realism_extra(cfg: DifusalConfig, reg: Regime) -> Frames | None:
    """The extra realism references (critics.realism_reference "with_extra": data.unlabelled_path's images)."""
    return reg.extra if cfg.critics.realism_reference == "with_extra" else None


def _load_critics(cfg: DifusalConfig, folder: Path, reg: Regime) -> Critics:
    """The frozen critics written at setup; the memorization guard (no learned state) is rebuilt from the
    regime's frames and must reproduce the threshold written then (else the data changed under the run)."""
    s = json.loads((folder / "setup.json").read_text())
    plane, ga = _load_nets(folder, cfg, prefix="critic_", plane_critic=cfg.critics.plane_checkpoint)
    t = load_file(str(folder / "critic_embedding.safetensors"))
    guard = copy_guard(reg.generator_frames, cfg.critics)
    if abs(guard.threshold - s["memo_threshold"]) > 1e-5:
        raise SonoshiftError(f"the regime's training frames differ from those {folder} was set up with "
                             "(memorization threshold changed); the data changed under this run, use a new -o folder.")
    return Critics(plane, ga, t["train_emb"], s["realism_threshold"], guard, cfg.critics,
                   t["train_hist"], s["histogram_bc_threshold"], s.get("critic_ga_slack_weeks", 0.0))


def _probe(pipe, critics: Critics, cfg: DifusalConfig, seed: int, masks: torch.Tensor, has_ga: bool = True) -> float:
    """Near-copy rate of ``generator.probe`` fresh samples (generated planes in turn, GA uniform over the bins,
    or the null GA when the regime has none), masked by the fan like every candidate."""
    n = cfg.generator.probe
    rng = np.random.default_rng(seed)
    planes = np.asarray(generated_planes(cfg))[np.arange(n) % len(generated_planes(cfg))]
    ga = rng.uniform(cfg.loop.ga_edges[0], cfg.loop.ga_edges[-1], n)
    return near_copy_rate(critics, apply_fan(_sample(pipe, cfg, planes, ga, seed, has_ga), masks))


def _sample(pipe, cfg: DifusalConfig, planes: np.ndarray, ga: np.ndarray, seed: int, has_ga: bool,
            init: torch.Tensor | None = None) -> torch.Tensor:
    """Candidates in the configured domain's look; without a labelled GA the GA is the null token; ``init``:
    image-guided at ``loop.init_strength``."""
    return gen_mod.sample(pipe, planes, ga if has_ga else np.full(len(ga), np.nan), seed,
                          domain=cfg.generator.sample_domain, init=init, strength=cfg.loop.init_strength)


def init_images(cfg: DifusalConfig, reg: Regime, planes: np.ndarray, seed: int, critic: torch.nn.Module | None = None
                ) -> tuple[torch.Tensor | None, np.ndarray]:
    """The start images of image-guided candidates of plane ids ``planes`` and their indices in the generator's
    unlabelled pool (difusal/init_images.py; with ``loop.init_match`` matched by the frozen ``critic``);
    (None, -1s) when ``loop.init_strength`` is 0."""
    if cfg.loop.init_strength <= 0:
        return None, np.full(len(planes), -1)
    pool = reg.generator_unlabelled
    probs = plane_probs(critic, pool.x) if cfg.loop.init_match and critic is not None and len(pool) else None
    return draw_starts(pool, planes, seed, probs)


def _round0(cfg: DifusalConfig, reg: Regime, arm: Arm, folder: Path, setup: Path, real: Path) -> None:
    """Round 0 of an arm: the downstream models on the real frames alone (the real arm's models, reused when
    the arm trains on the same frames the same way: training is deterministic)."""
    n, head = len(cfg.data.planes), cfg.data.planes.index(cfg.data.head_plane)
    with atomic_dir(folder) as tmp:
        if not augments(cfg, arm) and not arm.translated and (real / "metrics.json").is_file():
            models = _load_models(real, cfg)
        else:
            models = _train_all(training_frames(reg, arm), cfg, augments(cfg, arm))
        _save_models(models, tmp)
        if arm.loop:
            (tmp / "generator.safetensors").write_bytes((setup / "generator.safetensors").read_bytes())
        save_set(tmp / "synthetic_cumulative.npz", torch.zeros(0, 1, cfg.data.size, cfg.data.size),
                 np.zeros(0, np.int64), np.zeros(0))
        _write_json(tmp / "metrics.json", {**_scores(models, reg, n, head, tmp), "round": 0, "n_synthetic": 0})


def conditions_for(alloc: np.ndarray, edges: tuple[float, ...], rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Plane ids and GA weeks (uniform inside the bin) for an allocation (n_planes, n_bins) of counts."""
    planes, gas = [], []
    for p in range(alloc.shape[0]):
        for b in range(alloc.shape[1]):
            k = int(alloc[p, b])
            planes += [p] * k
            gas += rng.uniform(edges[b], edges[b + 1], k).tolist()
    return np.asarray(planes, np.int64), np.asarray(gas, np.float64)


def _loop_round(cfg: DifusalConfig, reg: Regime, arm: Arm, k: int, folder: Path, prev: Path, setup: Path,
                seed: int) -> None:
    planes = tuple(cfg.data.planes)
    n, head, lp = len(planes), planes.index(cfg.data.head_plane), cfg.loop
    models = _load_models(prev, cfg)[0]  # the current models (seed 0) judge weakness and hardness
    critics = _load_critics(cfg, setup, reg)
    masks = fan_masks(reg.fan_frames)
    pipe = gen_mod.load_into(gen_mod.build(cfg.generator, planes, cfg.data.size, cfg.seed), prev / "generator.safetensors")
    with atomic_dir(folder) as tmp:
        # (1) weakness on the regime's validation frames
        err, ent = plane_weakness(plane_probs(models.plane, reg.val.x), reg.val.y, n)
        hv = np.flatnonzero((reg.val.y == head) & np.isfinite(reg.val.ga))
        gw = ga_weakness(reg.val.ga[hv], ga_of(models.ga, reg.val.x[hv]), lp.ga_edges) if len(hv) else \
            np.zeros(len(lp.ga_edges) - 1)
        w = condition_weakness(err, ent, gw, head, lp.entropy_weight)
        # (2) allocation
        alloc = allocation_for(cfg, arm, w)
        rows = [{"plane": planes[p], "ga_bin": f"{lp.ga_edges[b]:g}-{lp.ga_edges[b + 1]:g}",
                 "plane_error": err[p], "plane_entropy": ent[p], "ga_bin_error": gw[b] if p == head else 0.0,
                 "weakness": w[p, b], "allocated": int(alloc[p, b])} for p in range(n) for b in range(w.shape[1])]
        pd.DataFrame(rows).to_csv(tmp / "weakness.csv", index=False)
        # (3) candidates scored by the frozen critics
        p_ids, ga_c = conditions_for(alloc, lp.ga_edges, np.random.default_rng(seed))
        if not reg.has_ga:
            ga_c = np.full(len(ga_c), np.nan)
        init, init_index = init_images(cfg, reg, p_ids, seed + 5, critics.plane)
        x = apply_fan(_sample(pipe, cfg, p_ids, ga_c, seed, reg.has_ga, init), masks)
        scores = critics.score(x, p_ids, ga_c, head)
        # (4) hardness from the current models, then selection
        scores["down_conf"] = plane_probs(models.plane, x)[np.arange(len(p_ids)), p_ids]
        down_ga = ga_of(models.ga, x)
        scores["down_ga_err"] = np.where(p_ids == head, down_ga - ga_c, np.nan)
        scores = select(scores, lp.easy_conf, lp.ga_hard_weeks, p_ids, lp.per_plane_cap)
        scores.insert(0, "candidate", np.arange(len(p_ids)))
        scores.insert(1, "plane", [planes[p] for p in p_ids])
        scores.insert(2, "ga_weeks", ga_c)
        scores.insert(3, "ga_bin", bin_index(ga_c, lp.ga_edges))
        scores.insert(4, "init_index", init_index)
        scores.to_csv(tmp / "scores.csv", index=False)
        save_set(tmp / "candidates.npz", x, p_ids, ga_c)
        if init is not None:  # image-guided: each candidate's start image, for the report's contact sheets
            save_set(tmp / "starts.npz", init, p_ids, ga_c)
        acc = np.array(scores["accepted"], dtype=bool)
        save_set(tmp / "accepted.npz", x[torch.from_numpy(acc)], p_ids[acc], ga_c[acc])
        # (5) retrain downstream on real + all accepted so far; fine-tune the generator; re-check memorization
        new = load_set(tmp / "accepted.npz")
        cum = Frames.concat([load_set(prev / "synthetic_cumulative.npz"), new])
        fc, fa = fidelity(critics, x), fidelity(critics, x[torch.from_numpy(acc)])
        _finish(cfg, reg, arm, k, tmp, cum, seed, extra={
            "n_candidates": len(p_ids), "n_accepted": int(acc.sum()),
            "fid_candidates": fc["fid"], "kid_candidates": fc["kid"], "fid_accepted": fa["fid"],
            "kid_accepted": fa["kid"],
            **{f"rejected_{r}": int((scores["reason"] == r).sum()) for r in REASONS}})
        gen_mod.train(pipe, reg.train, cfg.generator.finetune_steps if len(new) else 0, cfg.generator, seed + 1,
                      extra=cum, lr=cfg.generator.finetune_lr, fresh=False,
                      unlabelled=generator_unlabelled(cfg, reg, critics.plane))
        gen_mod.save(pipe, tmp / "generator.safetensors")
        m = json.loads((tmp / "metrics.json").read_text())
        m["near_copy_rate_after_finetune"] = _probe(pipe, critics, cfg, seed + 2, masks, reg.has_ga)
        _write_json(tmp / "metrics.json", m)


def _borrow_round(cfg: DifusalConfig, reg: Regime, arm: Arm, k: int, folder: Path, prev: Path, lender: Path,
                  seed: int) -> None:
    cand = load_set(lender / "candidates.npz")
    n_acc = int(pd.read_csv(lender / "scores.csv")["accepted"].sum())
    pick = np.sort(np.random.default_rng(seed).choice(len(cand), n_acc, replace=False))
    with atomic_dir(folder) as tmp:
        chosen = cand.take(pick)
        save_set(tmp / "accepted.npz", chosen.x, chosen.y, chosen.ga)
        pd.DataFrame({"candidate": pick}).to_csv(tmp / "chosen.csv", index=False)
        cum = Frames.concat([load_set(prev / "synthetic_cumulative.npz"), load_set(tmp / "accepted.npz")])
        _finish(cfg, reg, arm, k, tmp, cum, seed, extra={"n_candidates": len(cand), "n_accepted": n_acc})


def _reuse_round(cfg: DifusalConfig, reg: Regime, arm: Arm, k: int, folder: Path, lender: Path, seed: int) -> None:
    """A round of an arm that trains on the lender's accepted images so far (arms.py ``reuses``)."""
    with atomic_dir(folder) as tmp:
        cum = load_set(lender / "synthetic_cumulative.npz")
        _finish(cfg, reg, arm, k, tmp, cum, seed, extra={"n_accepted": int(json.loads(
            (lender / "metrics.json").read_text()).get("n_accepted", 0))})


def _finish(cfg: DifusalConfig, reg: Regime, arm: Arm, k: int, tmp: Path, cum: Frames, seed: int,
            extra: dict) -> None:
    n, head = len(cfg.data.planes), cfg.data.planes.index(cfg.data.head_plane)
    save_set(tmp / "synthetic_cumulative.npz", cum.x, cum.y, cum.ga)
    models = _train_all(training_frames(reg, arm, cum), cfg, augments(cfg, arm))
    _save_models(models, tmp)
    _write_json(tmp / "metrics.json", {**_scores(models, reg, n, head, tmp), "round": k,
                                       "n_synthetic": len(cum), **extra})


def _scores(models: list[Models], reg: Regime, n: int, head: int, tmp: Path) -> dict[str, float]:
    """Test scores (and predictions) of ``models``, and under each test variant the regime has
    (test_variants.py): with harmonized test frames their scores prefixed ``harmonized_``; with adaptation
    images the scores of the plane classifiers re-normalized on them, prefixed ``adapted_``, and with adapt_zooms
    those of the zoom ensembles re-normalized at each zoom, prefixed ``adapted_zoomed_``."""
    out = evaluate(models, reg.test, n, head, tmp / PREDICTIONS)
    ad, zooms = reg.adapt, reg.adapt_zooms
    runs = {"harmonized": (models, reg.test_harmonized),
            "adapted": ([adapt_models(m, ad.x) for m in models] if ad is not None else None, reg.test),
            "adapted_zoomed": ([adapt_models(m, ad.x, zooms) for m in models] if ad is not None and zooms else None,
                               reg.test)}
    for key, (ms, test) in runs.items():
        if ms is not None and test is not None:
            h = evaluate(ms, test, n, head, tmp / predictions_file(key))
            out.update({f"{key}_{k}": v for k, v in h.items() if k not in ("n_test", "n_seeds")})
    return out


def stages(cfg: DifusalConfig) -> list[tuple[str, str, int]]:
    """Every stage in run order: (regime, arm or "setup", round)."""
    out = []
    for frac in cfg.label_fractions:
        r = regime_name(frac)
        out.append((r, "setup", 0))
        arms = run_order(tuple(cfg.arms))
        out += [(r, a.name, 0) for a in arms]
        for k in range(1, cfg.loop.rounds + 1):
            order = [a for a in arms if a.loop] + [a for a in arms if a.lender]
            out += [(r, a.name, k) for a in order]
    return out


def stage_dir(out: Path, regime: str, arm: str, k: int) -> Path:
    return out / regime / "setup" if arm == "setup" else out / regime / arm / f"round_{k}"


def run_difusal(cfg: DifusalConfig, data: str | Path, out: str | Path, *, progress: bool = True,
                max_stages: int | None = None) -> list[tuple[str, str, int]]:
    """Run (or continue) every stage; returns the stages run now (finished ones are skipped). ``max_stages``
    stops after that many new stages (as if the run were killed there)."""
    check_config(cfg)
    out = Path(out)
    saved = out / "config.yaml"
    fresh = not saved.is_file()
    if not fresh:
        from sonoshift.config import read_yaml
        if read_yaml(saved) != json.loads(json.dumps(to_dict(cfg))):
            raise SonoshiftError(f"{out} holds a run with another config (config.yaml); use a new -o folder.")
    torch.set_num_threads(max(1, cfg.threads))
    todo = [s for s in stages(cfg) if not (stage_dir(out, *s) / "metrics.json").is_file()
            and not (s[1] == "setup" and (stage_dir(out, *s) / "setup.json").is_file())]
    if max_stages is not None:
        todo = todo[:max_stages]
    regimes = {r.name: r for r in load_regimes(cfg, data)} if todo else {}
    if fresh:  # only once the data is known to fit, so a refused first run leaves no folder behind
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, saved)
    done = []
    for regime, arm_name, k in track(todo, "DiFUSAL stages", disable=not progress):
        t0, c0 = time.perf_counter(), time.process_time()
        reg, folder = regimes[regime], stage_dir(out, regime, arm_name, k)
        setup = stage_dir(out, regime, "setup", 0)
        seed = cfg.seed + 1000 * k + 17 * cfg.label_fractions.index(reg.fraction)
        if arm_name == "setup":
            _setup(cfg, reg, folder)
        elif k == 0:
            _round0(cfg, reg, ARMS[arm_name], folder, setup, stage_dir(out, regime, "real", 0))
        else:
            arm = ARMS[arm_name]
            prev = stage_dir(out, regime, arm_name, k - 1)
            if arm.loop:
                _loop_round(cfg, reg, arm, k, folder, prev, setup, seed + 31 * KNOWN_ARMS.index(arm_name))
            elif arm.borrows:
                _borrow_round(cfg, reg, arm, k, folder, prev, stage_dir(out, regime, arm.borrows, k), seed)
            else:
                _reuse_round(cfg, reg, arm, k, folder, stage_dir(out, regime, arm.reuses, k), seed)
        done.append((regime, arm_name, k))
        log = out / "stage_seconds.csv"
        with log.open("a") as fh:  # one line per finished stage (a resumed run appends)
            if fh.tell() == 0:
                fh.write("regime,arm,round,seconds,cpu_seconds\n")
            fh.write(f"{regime},{arm_name},{k},{time.perf_counter() - t0:.1f},{time.process_time() - c0:.1f}\n")
    collect_metrics(cfg, out)
    return done


def collect_metrics(cfg: DifusalConfig, out: Path) -> pd.DataFrame:
    """RUN/metrics.csv: one row per (regime, arm, round) that has finished; arms without rounds repeat their
    round-0 scores for every round (their training set does not change)."""
    rows = []
    for frac in cfg.label_fractions:
        r = regime_name(frac)
        for a in cfg.arms:
            for k in range(cfg.loop.rounds + 1):
                kk = k if ARMS[a].per_round else 0
                f = stage_dir(out, r, a, kk) / "metrics.json"
                if f.is_file():
                    m = json.loads(f.read_text())
                    rows.append({"regime": r, "label_fraction": frac, "arm": a, **m, "round": k})
    table = pd.DataFrame(rows)
    atomic_write_text(out / "metrics.csv", table.to_csv(index=False))
    return table


__all__ = ["collect_metrics", "conditions_for", "load_regimes", "run_difusal", "stages", "stage_dir"]
