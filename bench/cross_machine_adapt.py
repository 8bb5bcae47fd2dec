"""Plane classification across scanners inside one prepared dataset, raw vs re-normalized (AdaBN) on unlabelled
frames of the test scanners, and as a test-time zoom ensemble (raw and re-normalized at each zoom), over training seeds
(docs/judges.md, "Adapting to a new centre without labels").

The classifier trains on the frames of ``--train-domains`` (all splits pooled; a seeded 20% of those patients
early-stop it). The patients of ``--test-domains`` are split in two seeded halves: the frames of one half re-normalize
the classifier (their labels are never read), the other half is scored, and then the halves swap, so every test
frame is scored once by a classifier adapted on other patients. Prints per seed and the paired mean difference.

    sonoshift prepare --public fetal_planes_db --data-root ../shared/data -o DATA/fpdb128 resize.size=128
    python bench/cross_machine_adapt.py --data DATA/fpdb128 --train-domains "Voluson E6,Voluson S10" \\
        --test-domains "Aloka,Other" --seeds 0-9
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.config import load_config
from sonoshift.errors import SonoshiftError, exit_on_error
from sonoshift.judges.plane.adapt import adapt_classifier, zoom_classifier
from sonoshift.judges.plane.api import fit
from sonoshift.judges.plane.data import encode, load_samples, to_input
from sonoshift.judges.plane.scores import confusion, macro_f1
from sonoshift.judges.plane.train import ClassifierConfig, predict_proba
from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spain_africa_adapt import PAIRS, paired  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a prepared dataset with a plane label")
    ap.add_argument("--train-domains", required=True, help="comma-separated domains (scanners) to train on")
    ap.add_argument("--test-domains", required=True, help="comma-separated domains to adapt to and score")
    ap.add_argument("--config", type=Path, default=Path("configs/cpu/plane_classifier.yaml"))
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--zooms", default=",".join(f"{z:g}" for z in DEFAULT_ZOOMS), help="the zoom ensemble's zooms")
    a = ap.parse_args()
    zooms = tuple(float(z) for z in a.zooms.split(","))
    torch.set_num_threads(1)
    lo, _, hi = a.seeds.partition("-")
    seeds = list(range(int(lo), int(hi) + 1)) if hi else [int(s) for s in a.seeds.split(",")]
    cfg = load_config(ClassifierConfig, a.config, [])
    every = load_samples(a.data, ["train", "val", "test"], cfg.image_size)
    train_doms, test_doms = a.train_domains.split(","), a.test_domains.split(",")
    src = every.subset([d in train_doms for d in every.domains])
    tgt = every.subset([d in test_doms for d in every.domains])
    if not len(src) or not len(tgt):
        raise SonoshiftError(f"{a.data} has no frame of the domains {train_doms if not len(src) else test_doms}.")
    classes = tuple(sorted(set(src.labels) & set(tgt.labels)))
    src, tgt = (s.subset([l in classes for l in s.labels]) for s in (src, tgt))
    if set(src.patients) & set(tgt.patients):
        raise SonoshiftError("a patient has frames on both sides; choose domains that do not share patients.")
    cfg = dataclasses.replace(cfg, classes=classes)
    y = encode(tgt.labels, classes)
    print(f"{len(src)} training frames ({', '.join(train_doms)}), {len(tgt)} test frames ({', '.join(test_doms)}); "
          f"classes {', '.join(classes)}")
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        sp = np.array(sorted(set(src.patients)))
        val_p = set(rng.choice(sp, max(1, len(sp) // 5), replace=False).tolist())
        is_val = np.array([p in val_p for p in src.patients])
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        clf = fit(src.subset(~is_val), src.subset(is_val), c, progress=False)
        tp = np.array(sorted(set(tgt.patients)))
        half = set(rng.choice(tp, len(tp) // 2, replace=False).tolist())
        in_half = np.array([p in half for p in tgt.patients])
        pred = {"raw": predict_proba(clf.model, to_input(tgt.frames)).argmax(1),
                "zoomed": predict_proba(zoom_classifier(clf, zooms).model, to_input(tgt.frames)).argmax(1)}
        for name in ("adapted", "adapted_zoomed"):
            pred[name] = np.empty_like(pred["raw"])
            for scored in (in_half, ~in_half):  # adapt on the other half's frames (labels unread), score this half
                other = tgt.frames[~scored]
                m = (adapt_classifier(clf, other, "other half") if name == "adapted"
                     else zoom_classifier(clf, zooms, other, "other half")).model
                pred[name][scored] = predict_proba(m, to_input(tgt.frames[scored])).argmax(1)
        r = {f"{n}_{k}": v for n, p in pred.items()
             for k, v in (("accuracy", float((p == y).mean())), ("macro_f1", macro_f1(confusion(y, p, len(classes)))))}
        rows.append(r)
        print(f"seed {seed}: " + "; ".join(f"{n} {r[f'{n}_accuracy']:.3f} / {r[f'{n}_macro_f1']:.3f}" for n in pred)
              + " (accuracy / macro-F1)", flush=True)
    df = pd.DataFrame(rows)
    print(f"zooms {zooms}")
    for m in ("accuracy", "macro_f1"):
        print(f"{m}: " + ", ".join(f"{n} {df[f'{n}_{m}'].mean():.3f} +- {df[f'{n}_{m}'].std(ddof=1):.3f}"
                                   for n in pred))
        for x, yv in PAIRS:
            print("  " + paired(df[f"{x}_{m}"].to_numpy() - df[f"{yv}_{m}"].to_numpy(), f"{x} - {yv}"))


if __name__ == "__main__":
    exit_on_error(main)
