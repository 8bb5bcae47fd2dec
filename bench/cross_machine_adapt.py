"""Plane classification across scanners inside one prepared dataset, raw vs re-normalized (AdaBN) on unlabelled
frames of the test scanners, over training seeds (docs/judges.md, "Adapting to a new centre without labels").

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
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from sonoshift.config import load_config
from sonoshift.errors import SonoshiftError, exit_on_error
from sonoshift.judges.plane.adapt import adapt_classifier
from sonoshift.judges.plane.api import fit
from sonoshift.judges.plane.data import encode, load_samples, to_input
from sonoshift.judges.plane.scores import confusion, macro_f1
from sonoshift.judges.plane.train import ClassifierConfig, predict_proba


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a prepared dataset with a plane label")
    ap.add_argument("--train-domains", required=True, help="comma-separated domains (scanners) to train on")
    ap.add_argument("--test-domains", required=True, help="comma-separated domains to adapt to and score")
    ap.add_argument("--config", type=Path, default=Path("configs/cpu/plane_classifier.yaml"))
    ap.add_argument("--seeds", default="0-4")
    a = ap.parse_args()
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
        raw = predict_proba(clf.model, to_input(tgt.frames)).argmax(1)
        adapted = np.empty_like(raw)
        for scored in (in_half, ~in_half):  # adapt on the other half's frames (labels unread), score this half
            m = adapt_classifier(clf, tgt.frames[~scored], "other half").model
            adapted[scored] = predict_proba(m, to_input(tgt.frames[scored])).argmax(1)
        r = [float((raw == y).mean()), float((adapted == y).mean()),
             macro_f1(confusion(y, raw, len(classes))), macro_f1(confusion(y, adapted, len(classes)))]
        rows.append(r)
        print(f"seed {seed}: accuracy raw {r[0]:.3f} adapted {r[1]:.3f}; macro-F1 {r[2]:.3f} -> {r[3]:.3f}", flush=True)
    arr = np.array(rows)
    for name, i in (("accuracy", 0), ("macro_f1", 2)):
        d = arr[:, i + 1] - arr[:, i]
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        print(f"{name}: raw {arr[:, i].mean():.3f} +- {arr[:, i].std(ddof=1):.3f}, adapted {arr[:, i + 1].mean():.3f} "
              f"+- {arr[:, i + 1].std(ddof=1):.3f}; adapted - raw {d.mean():+.3f} [95% CI {d.mean() - half:+.3f}, "
              f"{d.mean() + half:+.3f}] over {len(d)} seeds, higher in {(d > 0).sum()}, lower in {(d < 0).sum()}")


if __name__ == "__main__":
    exit_on_error(main)
