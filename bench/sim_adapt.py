"""The demo's frozen plane judge on the handheld test frames: raw, re-normalized on unlabelled handheld frames
(AdaBN, ``judges.plane.adapt``; also as the test-time zoom ensemble re-normalized at each zoom, ``judges.plane.zoom``)
and, read from the run folders, after each harmonization method and on the ground
truth: is a pixel-level translator better than re-normalizing the judge? (docs/judges.md, "Adapting to a new
centre without labels").

    python bench/sim_adapt.py --demo runs/demo
"""

from __future__ import annotations

import argparse
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

METHODS = ("histogram_match", "depth_affine", "cyclegan", "ddgan", "cascade")


def frames_of(root: Path, paths, size: int) -> np.ndarray:
    return np.stack([cv2.resize(read_gray(root / p), (size, size), interpolation=cv2.INTER_AREA) for p in paths])


def scores(truth: np.ndarray, pred: np.ndarray, n: int) -> tuple[float, float]:
    return float((pred == truth).mean()), macro_f1(confusion(truth, pred, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a finished `sonoshift demo` folder")
    ap.add_argument("--source-domain", default="handheld")
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


if __name__ == "__main__":
    exit_on_error(main)
