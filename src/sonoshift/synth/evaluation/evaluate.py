"""``evaluate_synth``: score a folder written by ``sonoshift synthesize`` against real prepared datasets.

Real images: the ``train`` split of each real dataset (what the synthesizer saw: memorization guard, nearest
real image, judges' training), the ``val`` split (the judges' early stopping only) and the ``test`` split (held
out: FID/KID, the judges' own accuracy, the classification accuracy score; ``val`` stands in when a dataset has
no test frames). The judges are the project's plane classifier and GA regressor (judges.py). Outputs in ``out``: ``metrics.json`` (everything), ``metrics.csv`` (one row
per number: group, metric, value, ci_lo, ci_hi, n, note), ``summary.md`` (the tables a person reads, trivial
baselines first), ``nearest_copies.png`` (the synthetic images closest to a training image, side by side with
it) and ``judges/`` (the judges used, reusable with ``--judges``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sonoshift.atomic import atomic_dir
from sonoshift.errors import SonoshiftError
from sonoshift.synth.config import SynthData
from sonoshift.synth.dataset import SynthDataset
from sonoshift.synth.evaluation.fidelity import ga_agreement, macro_f1, plane_predictions
from sonoshift.synth.evaluation.judges import load_judges, train_judges
from sonoshift.synth.evaluation.memorization import CopyGuard, nearest, normalise, perturb
from sonoshift.synth.evaluation.perceptual import try_lpips, us_perceptual
from sonoshift.synth.evaluation.realism import alexnet_features, fid_kid_bootstrap


@dataclass(frozen=True)
class EvalSynthConfig:
    """Settings of the synthesis evaluation (sizes, seeds, bootstrap and calibration choices)."""

    size: int = 64
    judge_steps: int = 0      # plane classifier step budget; 0 = configs/cpu/plane_classifier.yaml's
    judge_overrides: tuple[str, ...] = ()  # KEY=VALUE overrides of that recipe (e.g. "train.patience=6")
    ga_steps: int = 600
    cas_steps: int = 400
    n_boot: int = 200
    percentile: float = 1.0
    copy_size: int = 32       # memorization guard: pixels compared at this size, shifts up to copy_shift px
    copy_shift: int = 1
    planted: int = 200
    head_plane: str = "brain"
    max_real: int = 0
    seed: int = 0
    lpips_weights: str | None = None


@dataclass
class Images:
    """Images (N, 1, S, S) in [-1, 1] with plane names ("" unknown), GA weeks (NaN unknown), patient ids."""

    x: torch.Tensor
    plane: np.ndarray
    ga: np.ndarray
    patient: np.ndarray


def load_images(paths: list[str], splits: list[str], size: int, *, limit: int = 0, seed: int = 0,
                scored_only: bool = False) -> Images:
    """Frames of ``splits`` of the prepared datasets ``paths`` (plane names unified as in training), at
    ``size``; ``limit`` > 0 keeps a seeded random subset of that many. African test-part frames are left out
    (they train and select nothing) unless ``scored_only`` (held-out frames that are only scored)."""
    xs, planes, gas, pids = [], [], [], []
    for split in splits:
        try:
            ds = SynthDataset(SynthData(paths=tuple(paths), split=split, size=size, balance_planes=False),
                              keep_african_test=scored_only)
        except SonoshiftError:
            continue  # an empty split (e.g. no val patients) is fine
        for j, r in enumerate(ds.rows):
            xs.append(ds.image(j))
            planes.append(r["plane"])
            gas.append(r["ga_weeks"])
            pids.append(f"{r['part']}:{r['patient_id']}")  # paired scanners show the same patient
    if not xs:
        raise SonoshiftError(f"no frames in splits {splits} of {', '.join(paths)}.")
    keep = np.arange(len(xs))
    if limit and len(xs) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(xs), limit, replace=False))
    return Images(torch.stack([xs[i] for i in keep]), np.asarray(planes)[keep], np.asarray(gas, np.float64)[keep],
                  np.asarray(pids)[keep])


def _row(group: str, metric: str, value: float, lo: float = math.nan, hi: float = math.nan, n: int = 0,
         note: str = "") -> dict[str, Any]:
    return {"group": group, "metric": metric, "value": value, "ci_lo": lo, "ci_hi": hi, "n": n, "note": note}


def _side_by_side(syn: torch.Tensor, real: torch.Tensor, dist: np.ndarray, scale: int = 2) -> np.ndarray:
    """Pairs (synthetic | nearest training image) stacked vertically, distance written on each."""
    tiles = []
    for a, b, d in zip(syn, real, dist):
        pair = np.hstack([((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy() for t in (a, b)])
        pair = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        pair = cv2.cvtColor(pair, cv2.COLOR_GRAY2BGR)
        cv2.putText(pair, f"d={d:.3f}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
        tiles.append(pair)
    return np.vstack(tiles)


def evaluate_synth(
    synth_dir: str | Path, out: str | Path, *, real: list[str] | None = None, judges_dir: str | None = None,
    cfg: EvalSynthConfig = EvalSynthConfig(), progress: bool = True, judges: Any = None,
) -> dict[str, Any]:
    """Score the synthetic folder ``synth_dir`` (see module notes); returns the metrics dict also written to
    ``out/metrics.json``. ``real`` defaults to the training datasets recorded by ``synthesize``; ``judges`` (an
    object following :class:`~sonoshift.synth.evaluation.judges.Judges`) or ``judges_dir`` replace the judges
    trained here."""
    synth_dir = Path(synth_dir)
    info_path = synth_dir / "dataset.json"
    if not info_path.is_file():
        raise SonoshiftError(f"{synth_dir} is not a synthesize output (no dataset.json).")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    syn_meta = info.get("synthesis") or {}
    real = list(real or syn_meta.get("training_datasets") or [])
    if not real:
        raise SonoshiftError("give the real prepared datasets with --real (the synthetic folder names none).")
    g = torch.Generator().manual_seed(cfg.seed)
    syn = load_images([str(synth_dir)], [syn_meta.get("split", "train")], cfg.size)
    train = load_images(real, ["train"], cfg.size, limit=cfg.max_real, seed=cfg.seed)
    try:
        val = load_images(real, ["val"], cfg.size, limit=cfg.max_real, seed=cfg.seed)
    except SonoshiftError:
        val = None
    try:
        held = load_images(real, ["test"], cfg.size, limit=cfg.max_real, seed=cfg.seed, scored_only=True)
    except SonoshiftError:
        if val is None:
            raise
        held = val
    planes = tuple(sorted({p for p in train.plane if p}))
    rows: list[dict[str, Any]] = []
    res: dict[str, Any] = {"synthetic": str(synth_dir), "real": real, "n_synthetic": len(syn.x),
                           "n_real_train": len(train.x), "n_real_heldout": len(held.x), "synthesis": syn_meta}

    # Judges: given, loaded, or trained here on the real training frames.
    if judges is None and judges_dir:
        judges = load_judges(judges_dir)
    trained_here = judges is None
    if judges is None:
        enc = lambda s: torch.tensor([planes.index(p) if p in planes else -1 for p in s.plane])  # noqa: E731
        use_val = val is not None and val is not held
        judges = train_judges(train.x, enc(train), torch.tensor(train.ga, dtype=torch.float32), planes,
                              val_images=val.x if use_val else None, val_plane=enc(val) if use_val else None,
                              head_plane=cfg.head_plane, plane_steps=cfg.judge_steps, ga_steps=cfg.ga_steps,
                              seed=cfg.seed, progress=progress, plane_overrides=cfg.judge_overrides)
    res["judges"] = {"label": judges.label, "trained_here": trained_here, "planes": list(judges.planes)}

    f_syn, f_train, f_held = (judges.embed(s.x) for s in (syn, train, held))

    # Realism: FID/KID in the embedding, synthetic vs held-out real; baseline: real training frames vs held-out.
    n = len(syn.x)
    base_idx = torch.randperm(len(train.x), generator=g)[:n]
    for name, fa in (("real_train_vs_heldout (baseline)", f_train[base_idx]), ("synthetic_vs_heldout", f_syn)):
        r = fid_kid_bootstrap(fa, f_held, n_boot=cfg.n_boot, generator=g)
        res.setdefault("realism", {})[name] = r
        rows.append(_row("realism", f"fid {name}", r["fid"], r["fid_lo"], r["fid_hi"], r["n_a"], "us-embedding"))
        rows.append(_row("realism", f"kid {name}", r["kid"], r["kid_lo"], r["kid_hi"], r["n_a"], "us-embedding"))
    # The same in ImageNet AlexNet features when the LPIPS-alex weights load (no Inception weights are read).
    lp, why = try_lpips(cfg.lpips_weights)
    if lp is not None:
        a_syn, a_train, a_held = (alexnet_features(lp, t) for t in (syn.x, train.x[base_idx], held.x))
        g_alex = torch.Generator().manual_seed(cfg.seed + 1)  # its own draws: the rows below stay the same
        for name, fa in (("real_train_vs_heldout (baseline)", a_train), ("synthetic_vs_heldout", a_syn)):
            r = fid_kid_bootstrap(fa, a_held, n_boot=cfg.n_boot, generator=g_alex)
            res.setdefault("realism_alexnet", {})[name] = r
            for m_ in ("fid", "kid"):
                rows.append(_row("realism", f"{m_} {name}", r[m_], r[f"{m_}_lo"], r[f"{m_}_hi"], r["n_a"],
                                 "alexnet-imagenet"))
    else:
        res["realism_alexnet"] = f"not computed: {why}"

    # Memorization guard: shift-tolerant pixel distance (memorization.py says why not the judges' embedding).
    guard = CopyGuard(train.x, train.patient, size=cfg.copy_size, max_shift=cfg.copy_shift,
                      percentile=cfg.percentile)
    cal, thr = guard.calibration, guard.threshold
    d_syn, copy_idx = guard.nearest(syn.x)
    flagged = d_syn < thr
    k = min(cfg.planted, len(train.x))
    pick = torch.randperm(len(train.x), generator=g)[:k]
    planted = perturb(train.x[pick], g)
    d_pl, nn_pl = guard.nearest(planted)
    planted_flag = float((d_pl < thr).float().mean())
    own = float(np.mean(train.patient[nn_pl.numpy()] == train.patient[pick.numpy()]))
    real_flag = float((guard.nearest(held.x)[0] < thr).float().mean())  # held-out patients: the false alarms
    res["memorization"] = {**cal, "near_copy_rate": float(flagged.float().mean()), "n_flagged": int(flagged.sum()),
                           "planted_flagged": planted_flag, "planted_nearest_is_own_patient": own,
                           "heldout_real_flagged (baseline)": real_flag,
                           "n_planted": k, "planted_perturbation": "Gaussian noise std 0.02 ([-1,1] units) + shift <= 1 px"}
    rows.append(_row("memorization", "near_copy_rate", res["memorization"]["near_copy_rate"], n=n,
                     note=f"threshold {thr:.4f} = {cfg.percentile} percentile of cross-patient NN distances"))
    rows.append(_row("memorization", "planted_copies_flagged", planted_flag, n=k, note="target >= 0.95"))
    rows.append(_row("memorization", "heldout_real_flagged (baseline)", real_flag, n=len(held.x),
                     note="real frames of unseen patients closer than the threshold"))
    order = torch.argsort(d_syn)[:8]
    sheet = _side_by_side(syn.x[order], train.x[copy_idx[order]], d_syn[order].numpy())
    # The nearest real training image in the judges' embedding (for the perceptual pairing below).
    _, nn_idx = nearest(normalise(f_syn), normalise(f_train))

    # Perceptual distances (lower = more similar).
    perc: dict[str, Any] = {}
    near = us_perceptual(judges, syn.x, train.x[nn_idx])
    rng = np.random.default_rng(cfg.seed)
    same = []
    for p in syn.plane:
        cands = np.nonzero(train.plane == p)[0] if p else np.arange(len(train.x))
        same.append(int(rng.choice(cands if len(cands) else np.arange(len(train.x)))))
    rand = us_perceptual(judges, syn.x, train.x[torch.tensor(same)])
    perc["us_perceptual_nearest_train"] = [float(near.mean()), float(near.std())]
    perc["us_perceptual_random_same_plane"] = [float(rand.mean()), float(rand.std())]
    if lp is not None:
        from sonoshift.metrics.lpips import lpips_distance

        def to01(t: torch.Tensor) -> torch.Tensor:  # [0, 1]; AlexNet's five stages need >= 32 px: smaller up to 64
            t = (t.clamp(-1, 1) + 1) / 2
            return t if min(t.shape[-2:]) >= 64 else torch.nn.functional.interpolate(t, size=(64, 64), mode="bilinear")
        a = lpips_distance(lp, to01(syn.x), to01(train.x[nn_idx]))
        b = lpips_distance(lp, to01(syn.x), to01(train.x[torch.tensor(same)]))
        perc["lpips_alex_nearest_train"] = [float(a.mean()), float(a.std())]
        perc["lpips_alex_random_same_plane"] = [float(b.mean()), float(b.std())]
    else:
        perc["lpips_alex"] = f"not computed: {why}"
    # Diversity: mean pairwise distance within a condition (same plane and GA within 2 weeks), up to 24 images.
    div = {}
    for p in sorted({q for q in syn.plane}):
        idx = np.nonzero(syn.plane == p)[0][:24]
        if len(idx) < 2:
            continue
        ii, jj = np.triu_indices(len(idx), 1)
        close = np.abs(np.nan_to_num(syn.ga[idx][ii] - syn.ga[idx][jj], nan=0.0)) <= 2.0
        ii, jj = ii[close], jj[close]
        if len(ii):
            d = us_perceptual(judges, syn.x[idx[ii]], syn.x[idx[jj]])
            div[str(p) or "(unknown)"] = float(d.mean())
    real_div = {}
    for p in sorted(div):
        idx = np.nonzero(train.plane == p)[0]
        if len(idx) >= 2:
            sel = rng.choice(idx, min(24, len(idx)), replace=False)
            ii, jj = np.triu_indices(len(sel), 1)
            real_div[str(p)] = float(us_perceptual(judges, train.x[sel[ii]], train.x[sel[jj]]).mean())
    perc["diversity_within_condition"] = div
    perc["diversity_real_same_plane (baseline)"] = real_div
    perc["note"] = ("lower = more similar; us_perceptual = LPIPS formula on the judges' conv features with uniform "
                    "layer weights (not ImageNet-LPIPS); pairs: each synthetic image with its nearest real training "
                    "image (nearest in the embedding) and with a random real training image of the same plane")
    res["perceptual"] = perc
    for key, v in perc.items():
        if isinstance(v, list):
            rows.append(_row("perceptual", key, v[0], n=n, note=f"std {v[1]:.4f}; lower = more similar"))
    for p, v in div.items():
        rows.append(_row("diversity", f"synthetic {p}", v, note="mean pairwise us_perceptual, same plane, GA +-2 w"))
    for p, v in real_div.items():
        rows.append(_row("diversity", f"real {p} (baseline)", v, note="mean pairwise us_perceptual, same plane"))

    # Condition fidelity: plane.
    fid: dict[str, Any] = {}
    known = np.asarray([p in judges.planes for p in syn.plane])
    held_known = np.asarray([p in judges.planes for p in held.plane])
    if held_known.any():
        ph = plane_predictions(judges, held.x[torch.from_numpy(held_known)])
        fid["judge_macro_f1_real_heldout (baseline)"] = macro_f1(held.plane[held_known], ph)
    if known.any():
        ps = plane_predictions(judges, syn.x[torch.from_numpy(known)])
        fid["plane_macro_f1_synthetic"] = macro_f1(syn.plane[known], ps)
        fid["plane_accuracy_synthetic"] = float(np.mean(syn.plane[known] == ps))
        per = {}
        for p in sorted(set(syn.plane[known])):
            m = syn.plane[known] == p
            per[str(p)] = float(np.mean(ps[m] == p))
        fid["plane_recall_synthetic_by_plane"] = per
        # Classification accuracy score: a classifier trained on synthetic images only, tested on real held-out.
        cas_planes = tuple(sorted(set(syn.plane[known])))
        if len(cas_planes) >= 2:
            sx = syn.x[torch.from_numpy(known)]
            sp = torch.tensor([cas_planes.index(p) for p in syn.plane[known]])
            cas = train_judges(sx, sp, torch.full((len(sx),), math.nan), cas_planes, plane_steps=cfg.cas_steps,
                               seed=cfg.seed + 1, progress=progress)
            m = np.asarray([p in cas_planes for p in held.plane])
            if m.any():
                pc = plane_predictions(cas, held.x[torch.from_numpy(m)])
                fid["cas_macro_f1_real_heldout"] = macro_f1(held.plane[m], pc)
                fid["cas_accuracy_real_heldout"] = float(np.mean(held.plane[m] == pc))
                # Baseline: the same classifier trained on as many real training images of those planes.
                rm = np.nonzero(np.isin(train.plane, cas_planes))[0]
                sel = rng.choice(rm, min(len(rm), len(sx)), replace=False)
                base = train_judges(train.x[sel], torch.tensor([cas_planes.index(p) for p in train.plane[sel]]),
                                    torch.full((len(sel),), math.nan), cas_planes, plane_steps=cfg.cas_steps,
                                    seed=cfg.seed + 1, progress=progress)
                pb = plane_predictions(base, held.x[torch.from_numpy(m)])
                fid["real_trained_same_count_macro_f1_real_heldout (baseline)"] = macro_f1(held.plane[m], pb)
    # Condition fidelity: GA of synthetic heads.
    heads = (syn.plane == cfg.head_plane) & np.isfinite(syn.ga)
    if heads.sum() >= 3:
        ga_pred = judges.ga_weeks(syn.x[torch.from_numpy(heads)]).numpy()
        fid["ga_synthetic_heads"] = ga_agreement(ga_pred, syn.ga[heads], seed=cfg.seed)
    hh = (held.plane == cfg.head_plane) & np.isfinite(held.ga)
    if hh.sum() >= 3:
        fid["ga_real_heldout_heads (baseline)"] = ga_agreement(judges.ga_weeks(held.x[torch.from_numpy(hh)]).numpy(),
                                                               held.ga[hh], seed=cfg.seed)
    fid["ga_reader"] = ("direct image -> GA regressor (the judges' GA head) trained on real frames with known GA; "
                        f"applied to synthetic images conditioned on plane '{cfg.head_plane}'")
    res["fidelity"] = fid
    for key, v in fid.items():
        if isinstance(v, float):
            rows.append(_row("fidelity", key, v))
        elif isinstance(v, dict) and "mae" in v:
            for m_ in ("mae", "mae_shuffled", "spearman", "spearman_shuffled"):
                rows.append(_row("fidelity", f"{key} {m_}", v[m_], n=v["n"], note="weeks" if "mae" in m_ else ""))

    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(res, indent=2, default=float) + "\n", encoding="utf-8")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (tmp / "metrics.csv").write_text(buf.getvalue(), encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(res), encoding="utf-8")
        cv2.imwrite(str(tmp / "nearest_copies.png"), sheet)
        if trained_here:
            judges.save(tmp / "judges")
    return res


def _f(v: Any, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def summary_markdown(res: dict[str, Any]) -> str:
    """The tables a person reads (trivial baselines first)."""
    L = [f"# Synthesis evaluation: {res['synthetic']}", "",
         f"{res['n_synthetic']} synthetic, {res['n_real_train']} real training, {res['n_real_heldout']} real "
         f"held-out frames. Judges: {res['judges']['label']}.", "",
         "| realism (us-embedding) | FID [95% CI] | KID [95% CI] | n |", "|---|---|---|---|"]
    for k, r in res["realism"].items():
        L.append(f"| {k} | {_f(r['fid'])} [{_f(r['fid_lo'])}, {_f(r['fid_hi'])}] | {_f(r['kid'], 4)} "
                 f"[{_f(r['kid_lo'], 4)}, {_f(r['kid_hi'], 4)}] | {r['n_a']} |")
    alex = res.get("realism_alexnet")
    if isinstance(alex, dict):
        L += ["", "| realism (ImageNet AlexNet conv5, not Inception) | FID [95% CI] | KID [95% CI] | n |",
              "|---|---|---|---|"]
        for k, r in alex.items():
            L.append(f"| {k} | {_f(r['fid'])} [{_f(r['fid_lo'])}, {_f(r['fid_hi'])}] | {_f(r['kid'], 4)} "
                     f"[{_f(r['kid_lo'], 4)}, {_f(r['kid_hi'], 4)}] | {r['n_a']} |")
    elif alex:
        L += ["", f"Realism in ImageNet features: {alex}"]
    m = res["memorization"]
    L += ["", f"Memorization: near-copy rate {_f(m['near_copy_rate'])} ({m['n_flagged']} of {res['n_synthetic']}); "
          f"threshold {_f(m['threshold'], 4)} = {m['percentile']} percentile of cross-patient nearest-neighbour "
          f"distances of {m['n_images']} real training frames ({m['distance']}); planted copies flagged {_f(m['planted_flagged'])} "
          f"({m['n_planted']}, {m['planted_perturbation']}); held-out real frames flagged "
          f"{_f(m['heldout_real_flagged (baseline)'])} (baseline).", "", "Perceptual (lower = more similar):", ""]
    for k, v in res["perceptual"].items():
        L.append(f"- {k}: {v if not isinstance(v, list) else f'{v[0]:.4f} +- {v[1]:.4f}'}")
    L += ["", "Condition fidelity:", ""]
    for k, v in res["fidelity"].items():
        if isinstance(v, dict) and "mae" in v:
            v = (f"MAE {v['mae']:.2f} w (shuffled {v['mae_shuffled']:.2f}), Spearman {v['spearman']:.3f} "
                 f"(shuffled {v['spearman_shuffled']:.3f}), n={v['n']}")
        L.append(f"- {k}: {_f(v)}")
    return "\n".join(L) + "\n"


__all__ = ["EvalSynthConfig", "evaluate_synth", "load_images", "summary_markdown"]
