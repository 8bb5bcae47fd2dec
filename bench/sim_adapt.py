"""The demo's frozen plane judge on the handheld test frames: raw, re-normalized on unlabelled handheld frames
(AdaBN, ``judges.plane.adapt``; also as the test-time zoom ensemble re-normalized at each zoom, ``judges.plane.zoom``)
and, read from the run folders, after each harmonization method and on the ground
truth: is a pixel-level translator better than re-normalizing the judge? (docs/judges.md, "Adapting to a new
centre without labels").

    python bench/sim_adapt.py --demo runs/demo
    python bench/sim_adapt.py --demo runs/demo --judge-seeds 0-4   # + fresh judges of 5 seeds: raw / AdaBN / zooms
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from sonoshift.errors import SonoshiftError, exit_on_error
from sonoshift.io.images import read_gray
from sonoshift.judges.plane.adapt import adapt_classifier, zoom_classifier
from sonoshift.judges.plane.checkpoint import load_classifier
from sonoshift.judges.plane.data import to_input
from sonoshift.judges.plane.scores import confusion, macro_f1
from sonoshift.judges.plane.train import predict_proba
from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spain_africa_adapt import paired, seeds_arg  # noqa: E402

METHODS = ("histogram_match", "depth_affine", "cyclegan", "ddgan", "cascade")


def frames_of(root: Path, paths, size: int) -> np.ndarray:
    return np.stack([cv2.resize(read_gray(root / p), (size, size), interpolation=cv2.INTER_AREA) for p in paths])


def scores(truth: np.ndarray, pred: np.ndarray, n: int) -> tuple[float, float]:
    return float((pred == truth).mean()), macro_f1(confusion(truth, pred, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a finished `sonoshift demo` folder")
    ap.add_argument("--source-domain", default="handheld")
    ap.add_argument("--target-domain", default="cart", help="the domain fresh judges train on (--judge-seeds)")
    ap.add_argument("--judge-seeds", default="", help="also train fresh judges of these seeds (e.g. 0-4) and score "
                                                      "each raw, AdaBN and AdaBN at zooms")
    a = ap.parse_args()
    torch.set_num_threads(1)
    runs, data = a.demo / "harmonized", a.demo / "data"
    if not (runs / "untranslated" / "outputs.csv").is_file():
        raise SonoshiftError(f"{a.demo} is not a finished demo folder (no harmonized/untranslated/outputs.csv).")
    clf = load_classifier(a.demo / "models" / "plane_classifier")
    n, size = len(clf.classes), clf.image_size
    test = pd.read_csv(runs / "untranslated" / "outputs.csv")
    man = pd.concat([pd.read_csv(data / f"manifest_{k}.csv") for k in ("train", "val", "test")])
    plane = dict(zip(man["path"], man["plane"]))
    index = {c: i for i, c in enumerate(clf.classes)}
    truth = np.array([index[plane[p]] for p in test["source_path"]])
    raw = frames_of(data, test["source_path"], size)
    train = man[(man["path"].str.startswith("frames/")) & (man["domain"] == a.source_domain)]
    train = train[train["patient_id"].isin(pd.read_csv(data / "manifest_train.csv")["patient_id"])]
    rows = [("raw (source frames)", *scores(truth, predict_proba(clf.model, to_input(raw)).argmax(1), n))]
    unlabelled = frames_of(data, train["path"], size)
    adapted = adapt_classifier(clf, unlabelled, f"{a.source_domain} train split")
    rows.append((f"raw, judge re-normalized on {len(train)} unlabelled {a.source_domain} training frames",
                 *scores(truth, predict_proba(adapted.model, to_input(raw)).argmax(1), n)))
    zoomed = zoom_classifier(clf, DEFAULT_ZOOMS, unlabelled, f"{a.source_domain} train split")
    rows.append((f"raw, judge at zooms {', '.join(f'{z:g}' for z in DEFAULT_ZOOMS)}, re-normalized at each",
                 *scores(truth, predict_proba(zoomed.model, to_input(raw)).argmax(1), n)))
    for m in METHODS:
        f = runs / m / "planes.csv"
        if f.is_file():
            t = pd.read_csv(f)
            t = t[t["variant"] == "harmonized"]
            rows.append((m, *scores(t["truth"].map(index).to_numpy(), t["pred"].map(index).to_numpy(), n)))
    t = pd.read_csv(runs / "untranslated" / "planes.csv")
    t = t[t["variant"] == "ground_truth"]
    rows.append(("ground truth (ceiling)",
                 *scores(t["truth"].map(index).to_numpy(), t["pred"].map(index).to_numpy(), n)))
    print(f"plane judge on {len(truth)} {a.source_domain} test frames: accuracy / macro-F1")
    for name, acc, f1 in rows:
        print(f"  {name:<75s} {acc:.3f} / {f1:.3f}")
    if a.judge_seeds:
        fresh_judges(seeds_arg(a.judge_seeds), data, a.target_domain, raw, truth, unlabelled, clf.classes)


def fresh_judges(seeds: list[int], data: Path, target: str, raw: np.ndarray, truth: np.ndarray,
                 unlabelled: np.ndarray, classes) -> None:
    """Judges of the demo's recipe trained on ``target`` frames with other seeds, each scored raw, re-normalized
    (AdaBN) and as the zoom ensemble re-normalized at each zoom, on the same frames; paired differences."""
    from sonoshift.pipeline.judges import JudgesConfig, train_plane_judge

    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            train_plane_judge(data, Path(tmp) / "judge", JudgesConfig(), domain=target, seed=seed, progress=False)
            clf = load_classifier(Path(tmp) / "judge")
        if tuple(clf.classes) != tuple(classes):
            raise SonoshiftError(f"a fresh judge has classes {clf.classes}, the demo's {classes}.")
        models = {"raw": clf.model, "adapted": adapt_classifier(clf, unlabelled, "train split").model,
                  "adapted_zoomed": zoom_classifier(clf, DEFAULT_ZOOMS, unlabelled, "train split").model}
        r = {}
        for name, m in models.items():
            r[f"{name}_accuracy"], r[f"{name}_macro_f1"] = scores(truth, predict_proba(m, to_input(raw)).argmax(1),
                                                                  len(classes))
        rows.append(r)
        print(f"judge seed {seed}: " + "; ".join(f"{n} {r[f'{n}_accuracy']:.3f} / {r[f'{n}_macro_f1']:.3f}"
                                                  for n in models), flush=True)
    df = pd.DataFrame(rows)
    for m in ("accuracy", "macro_f1"):
        print(f"{m}: " + ", ".join(f"{n} {df[f'{n}_{m}'].mean():.3f} +- {df[f'{n}_{m}'].std(ddof=1):.3f}"
                                   for n in ("raw", "adapted", "adapted_zoomed")))
        for x, y in (("adapted", "raw"), ("adapted_zoomed", "adapted")):
            print("  " + paired(df[f"{x}_{m}"].to_numpy() - df[f"{y}_{m}"].to_numpy(), f"{x} - {y}"))


if __name__ == "__main__":
    exit_on_error(main)
