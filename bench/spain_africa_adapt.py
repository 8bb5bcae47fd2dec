"""Spain -> Africa plane classification, raw vs re-normalized on the unlabelled African adaptation part (AdaBN) and
as a test-time zoom ensemble (raw and re-normalized at each zoom), over several training seeds, side by side in one
process (docs/judges.md, "Adapting to a new centre without labels").

Each seed trains the classifier of ``sonoshift classify spain-africa`` (Spanish FETAL_PLANES_DB labels only, the four
shared planes; Spanish validation frames early-stop) once; the same weights are then scored on the African test
part as they are, after ``judges.plane.adapt.adapt_classifier`` on the adaptation part's images (labels never
read), and as ``zoom_classifier`` at ``--zooms`` without and with those images. With ``--translator RUN`` (a
CycleGAN africa -> spain, e.g. the models/cyclegan folder of ``sonoshift classify spain-africa``) each seed also
trains on the Spanish frames plus their copies translated into the African look by its reverse generator (labels
kept; the DiFUSAL ``translated`` arm's data) and, as a control, plus Gaussian-blurred copies (is it only blur?),
scored the same ways. Prints per seed and the paired mean differences with a t interval over seeds; writes
OUT/adapt_seeds.csv.

    sonoshift prepare --public fetal_planes_db --data-root ../shared/data -o DATA/fpdb128 resize.size=128
    sonoshift prepare --public african_planes --data-root ../shared/data -o DATA/afr128 resize.size=128
    python bench/spain_africa_adapt.py --source DATA/fpdb128 --target DATA/afr128 --seeds 0-9 --out OUT
    python bench/spain_africa_adapt.py --source DATA/fpdb64 --target DATA/afr64 --image-size 64 \
        --translator SPAIN_AFRICA_RUN/models/cyclegan --seeds 0-9 --out OUT
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from scipy import stats

from sonoshift.config import load_config
from sonoshift.errors import exit_on_error
from sonoshift.judges.plane.adapt import adapt_classifier, zoom_classifier
from sonoshift.judges.plane.african import in_part, without_test_part
from sonoshift.judges.plane.api import fit, harmonize_samples
from sonoshift.judges.plane.cross_domain import SHARED_PLANES
from sonoshift.judges.plane.data import Samples, load_samples
from sonoshift.judges.plane.evaluate import classify_samples
from sonoshift.judges.plane.scores import summarize
from sonoshift.judges.plane.train import ClassifierConfig
from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS
from sonoshift.progress import track

PAIRS = (("adapted", "raw"), ("zoomed", "raw"), ("adapted_zoomed", "raw"), ("adapted_zoomed", "adapted"))
TRANSLATED_PAIRS = tuple((f"{arm}/{v}", v) for arm in ("translated", "blurred") for v in ("raw", "adapted_zoomed"))
BLUR_SIGMA = 1.2  # px: about the translated copies' loss of detail (looked at on a contact sheet)


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def score(clf, samples) -> dict:
    t = classify_samples(clf, samples)
    probs = t[[f"p_{c}" for c in clf.classes]].to_numpy()
    s = summarize(t["label_id"].to_numpy(), probs, clf.classes)
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "ece": s["ece"]}


def blurred_frames(train: Samples) -> np.ndarray:
    out = np.stack([cv2.GaussianBlur(f, (0, 0), BLUR_SIGMA) for f in train.frames])
    return np.where(train.frames > 0, out, 0).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="prepared FETAL_PLANES_DB")
    ap.add_argument("--target", type=Path, required=True, help="prepared African planes")
    ap.add_argument("--config", type=Path, default=Path("configs/cpu/plane_classifier.yaml"))
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--zooms", default=",".join(f"{z:g}" for z in DEFAULT_ZOOMS), help="the zoom ensemble's zooms")
    ap.add_argument("--image-size", type=int, default=0, help="classifier input side (0: the config's)")
    ap.add_argument("--translator", type=Path, default=None,
                    help="a CycleGAN africa -> spain run: also train on Spanish + translated (and blurred) copies")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    zooms = tuple(float(z) for z in a.zooms.split(","))
    torch.set_num_threads(a.threads)
    over = [f"image_size={a.image_size}"] if a.image_size else []
    cfg = dataclasses.replace(load_config(ClassifierConfig, a.config, over), classes=SHARED_PLANES)
    size = cfg.image_size
    shared = lambda s: s.subset([l in SHARED_PLANES for l in s.labels])  # noqa: E731
    train = shared(without_test_part(load_samples(a.source, ["train"], size), "training split"))
    val = shared(without_test_part(load_samples(a.source, ["val"], size), "validation split"))
    every = load_samples(a.target, ["train", "val", "test"], size)
    test = shared(every.subset(in_part(every.patients, "test")))
    adapt = every.subset(in_part(every.patients, "adaptation"))  # images only: adapt_classifier reads no label
    print(f"{len(train)} Spanish training frames, {len(test)} African test-part frames, "
          f"{len(adapt)} unlabelled adaptation-part frames; classifier at {size} px")
    arms = {"": train}
    if a.translator is not None:
        arms |= {"translated/": train.plus(harmonize_samples(train, a.translator, reverse=True)),
                 "blurred/": train.plus(train.with_frames(blurred_frames(train)))}
    rows = []
    for seed in track(seeds_arg(a.seeds), "seeds"):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        scores = {}
        for arm, frames in arms.items():
            clf = fit(frames, val, c, progress=False)
            variants = {"raw": clf, "adapted": adapt_classifier(clf, adapt.frames, "adaptation part"),
                        "zoomed": zoom_classifier(clf, zooms),
                        "adapted_zoomed": zoom_classifier(clf, zooms, adapt.frames, "adaptation part")}
            scores |= {arm + name: score(v, test) for name, v in variants.items()}
        rows.append({"seed": seed, **{f"{n}_{k}": v for n, s in scores.items() for k, v in s.items()}})
        print(f"seed {seed}: " + "; ".join(f"{n} {s['accuracy']:.3f} / {s['macro_f1']:.3f}"
                                            for n, s in scores.items()) + " (accuracy / macro-F1)", flush=True)
    df = pd.DataFrame(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / "adapt_seeds.csv", index=False)
    print(f"zooms {zooms}")
    for m in ("accuracy", "macro_f1", "ece"):
        print(f"{m}: " + ", ".join(f"{n} {df[f'{n}_{m}'].mean():.3f} +- {df[f'{n}_{m}'].std(ddof=1):.3f}"
                                   for n in scores))
        for x, y in PAIRS + (TRANSLATED_PAIRS if a.translator is not None else ()):
            print("  " + paired(df[f"{x}_{m}"].to_numpy() - df[f"{y}_{m}"].to_numpy(), f"{x} - {y}"))


def paired(d: np.ndarray, what: str) -> str:
    """Mean paired difference with a 95% t interval over seeds and the sign count."""
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return (f"{what} {d.mean():+.3f} [95% CI {d.mean() - half:+.3f}, {d.mean() + half:+.3f}] over {len(d)} seeds, "
            f"higher in {(d > 0).sum()}, lower in {(d < 0).sum()}")


if __name__ == "__main__":
    exit_on_error(main)
