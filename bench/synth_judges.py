"""How much does the plane-fidelity score of synthetic frames depend on the judge instance?

Scores synthetic folders (``sonoshift synthesize`` outputs) with several plane judges (judges folders from
``evaluate-synth`` or ``sonoshift classify train`` runs; e.g. the same recipe with different seeds) and prints,
per judge and over the judges: macro-F1 by conditioned plane (mean, standard deviation, min, max), per-plane
recall, the judge ensemble's score (mean softmax), and where the judges disagree (images every judge gets right,
none gets right, some get right; per plane), plus each judge's macro-F1 on real held-out frames (``--real``: the
test split of prepared datasets, the ceiling of any synthetic score).

    python bench/synth_judges.py --synthetic SYN [SYN2 ...] --judges J0 J1 J2 [--real DATA] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from sonoshift.errors import exit_on_error
from sonoshift.synth.evaluation.evaluate import load_images
from sonoshift.synth.evaluation.fidelity import macro_f1
from sonoshift.synth.evaluation.judges import load_judges


def score(judges: list, images, planes: tuple[str, ...]) -> dict:
    """Per-judge and ensemble plane scores of ``images`` (an evaluate.Images) whose conditioned plane is known."""
    keep = np.asarray([p in planes for p in images.plane])
    planes = tuple(str(p) for p in planes)
    x, y = images.x[torch.from_numpy(keep)], np.asarray([str(p) for p in images.plane[keep]], dtype=object)
    probs = [torch.softmax(j.plane_logits(x), 1).numpy() for j in judges]
    preds = [np.asarray(planes)[p.argmax(1)] for p in probs]
    per = [{"macro_f1": macro_f1(y, p), "recall": {c: float(np.mean(p[y == c] == c)) for c in sorted(set(y))}}
           for p in preds]
    f1 = np.array([r["macro_f1"] for r in per])
    ens = np.asarray(planes)[np.mean(probs, 0).argmax(1)]
    right = np.stack([p == y for p in preds])  # (judges, images)
    k = right.sum(0)
    by_plane = {c: {"all_right": float(np.mean(k[y == c] == len(judges))), "none_right": float(np.mean(k[y == c] == 0)),
                    "split": float(np.mean((k[y == c] > 0) & (k[y == c] < len(judges))))} for c in sorted(set(y))}
    # What the judges call the images they get wrong (pooled over judges), per conditioned plane.
    wrong_as = {c: {q: int(sum(np.sum((p[y == c] != c) & (p[y == c] == q)) for p in preds)) for q in planes if q != c}
                for c in sorted(set(y))}
    return {"n": int(len(y)), "per_judge": per, "mean": float(f1.mean()), "std": float(f1.std(ddof=1)) if len(f1) > 1 else 0.0,
            "min": float(f1.min()), "max": float(f1.max()), "ensemble_macro_f1": macro_f1(y, ens),
            "ensemble_recall": {c: float(np.mean(ens[y == c] == c)) for c in sorted(set(y))},
            "agreement": {"all_right": float(np.mean(k == len(judges))), "none_right": float(np.mean(k == 0)),
                          "split": float(np.mean((k > 0) & (k < len(judges))))},
            "agreement_by_plane": by_plane, "wrong_as": wrong_as,
            "mean_top_prob_right": float(np.mean([p.max(1)[r].mean() for p, r in zip(probs, right) if r.any()])),
            "mean_top_prob_wrong": float(np.mean([p.max(1)[~r].mean() for p, r in zip(probs, right) if (~r).any()]))
            if (~right).any() else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", nargs="+", required=True)
    ap.add_argument("--judges", nargs="+", required=True)
    ap.add_argument("--real", nargs="*", default=[], help="prepared datasets whose test split is scored (ceiling)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    judges = [load_judges(j) for j in args.judges]
    planes = judges[0].planes
    if any(j.planes != planes for j in judges):
        raise SystemExit("the judges must share one plane vocabulary.")
    res: dict = {"judges": args.judges}
    if args.real:
        held = load_images(args.real, ["test"], args.size, scored_only=True)
        res["real_heldout"] = score(judges, held, planes)
    for s in args.synthetic:
        res[s] = score(judges, load_images([s], ["train"], args.size), planes)
    for name, r in res.items():
        if name == "judges":
            continue
        f1 = ", ".join(f"{x['macro_f1']:.3f}" for x in r["per_judge"])
        print(f"{name}: n={r['n']} macro-F1 per judge [{f1}] mean {r['mean']:.3f} sd {r['std']:.3f} "
              f"(min {r['min']:.3f}, max {r['max']:.3f}); ensemble {r['ensemble_macro_f1']:.3f}")
        print("  recall mean over judges: " + ", ".join(
            f"{c} {np.mean([x['recall'][c] for x in r['per_judge']]):.2f}" for c in r["per_judge"][0]["recall"]))
        print(f"  agreement: all right {r['agreement']['all_right']:.2f}, none right {r['agreement']['none_right']:.2f}, "
              f"split {r['agreement']['split']:.2f}; by plane " + "; ".join(
                  f"{c} {v['all_right']:.2f}/{v['none_right']:.2f}/{v['split']:.2f}" for c, v in r["agreement_by_plane"].items()))
        print(f"  wrong as (pooled over judges): {r['wrong_as']}; top prob right {r['mean_top_prob_right']:.2f}, "
              f"wrong {r['mean_top_prob_wrong']:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    exit_on_error(main)
