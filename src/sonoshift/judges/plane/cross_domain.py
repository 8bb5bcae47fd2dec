"""The Spain -> Africa protocol: a plane classifier trained on FETAL_PLANES_DB labels only (the four planes the
African set shares), tested on the African *test* part (african.py), raw, re-normalized on the African
*adaptation* part's images (AdaBN, adapt.py: pixels only, no label), optionally after harmonizing the test
frames with a translator, and trained on the Spanish frames plus their copies translated into the African look by
that translator's reverse generator. No African label is used for training, tuning or model selection here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.config import Validated
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.adapt import MIN_FRAMES, adapt_classifier, zoom_classifier
from sonoshift.judges.plane.african import in_part, without_test_part
from sonoshift.judges.plane.api import fit, harmonize_samples
from sonoshift.judges.plane.checkpoint import PlaneClassifier, load_classifier, save_classifier
from sonoshift.judges.plane.data import Samples, load_samples
from sonoshift.judges.plane.evaluate import classify_samples, write_evaluation
from sonoshift.judges.plane.train import ClassifierConfig
from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS
from sonoshift.methods import has_reverse

SHARED_PLANES = ("Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax")


@dataclass(frozen=True)
class CrossDomainConfig(Validated):
    """Source = prepared FETAL_PLANES_DB (train split trains, val split early-stops); target = prepared African
    planes, scored on the test part only. ``classifier.classes`` defaults to the four shared planes."""

    classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(classes=SHARED_PLANES))
    adapt: bool = True  # also score the classifier re-normalized on the adaptation part's images (AdaBN)
    zooms: tuple[float, ...] = DEFAULT_ZOOMS  # also score the test-time zoom ensemble (zoom.py); () = off
    translated: bool = True  # with a CycleGAN translator: also train on Spanish + copies in the African look


def spain_to_africa(
    source: str | Path, target: str | Path, out: str | Path, cfg: CrossDomainConfig = CrossDomainConfig(), *,
    translator: str | Path | None = None, classifier: str | Path | None = None, progress: bool = True,
    african: dict | None = None, adaptation: Samples | None = None,
) -> pd.DataFrame:
    """Train (or load ``classifier``) on ``source``, score the African test part raw (and harmonized).

    Variants: ``raw``; ``adapted`` (``cfg.adapt``: BatchNorm statistics re-estimated on the African adaptation
    part's frames, labels never read; written to ``out/classifier_adapted``; skipped when the part holds fewer
    than ``MIN_FRAMES`` frames); ``zoomed`` and ``adapted_zoomed`` (``cfg.zooms``: the test-time zoom ensemble,
    zoom.py, raw and re-normalized at each zoom on the adaptation part); with a translator ``harmonized`` and
    ``harmonized_adapted`` (re-estimated on the harmonized adaptation frames); with a CycleGAN translator,
    ``cfg.translated`` and a classifier trained here, ``translated`` and ``translated_adapted_zoomed``: a second
    classifier trained on the Spanish training frames plus their copies made by the translator's reverse
    (spain -> africa) generator, labels kept (pixel-level adaptation; written to ``out/classifier_translated``),
    raw and, with adaptation frames and zooms, as the re-normalized zoom ensemble. Writes ``out/classifier`` (when
    trained), one folder per variant (predictions, summary per centre, confusion PNG) and ``out/cross_domain.csv``
    (variant x centre: n, accuracy, macro-F1, ECE).
    ``african``: the adaptation/test rule (default: the project's written ``african_split.json``).
    ``adaptation``: the unlabelled frames to re-normalize on when they are not in ``target`` (only their
    adaptation-part patients are used); default: ``target``'s adaptation part."""
    out = Path(out)
    ccfg = cfg.classifier
    clf_t: PlaneClassifier | None = None  # trained on Spanish + translated copies
    if classifier is not None:
        clf: PlaneClassifier = load_classifier(classifier)
    else:
        train = without_test_part(load_samples(source, ["train"], ccfg.image_size, label=ccfg.label),
                                  f"training split of {source}", african)
        val = without_test_part(load_samples(source, ["val"], ccfg.image_size, label=ccfg.label),
                                f"validation split of {source}", african)
        if len(train) == 0:
            raise SonoshiftError(f"source dataset {source} has no labelled training frame.")
        info = {"dataset": str(Path(source).resolve()), "protocol": "spain_to_africa"}
        clf = fit(train, val, ccfg, data_info=info, progress=progress)
        save_classifier(clf, out / "classifier")
        if translator is not None and cfg.translated and has_reverse(translator):
            moved = harmonize_samples(train, translator, reverse=True)
            clf_t = fit(train.plus(moved), val, ccfg, progress=progress,
                        data_info={**info, "translated_copies": len(moved), "translator": str(translator)})
            save_classifier(clf_t, out / "classifier_translated")
    every = load_samples(target, ["train", "val", "test"], clf.image_size, label=clf.label)
    test = every.subset(in_part(every.patients, "test", african))
    test = test.subset([l in clf.classes for l in test.labels])
    if len(test) == 0:
        raise SonoshiftError(f"target dataset {target} holds no African test-part frame of the classes {clf.classes}.")
    pool = every if adaptation is None else adaptation
    adapt = pool.subset(in_part(pool.patients, "adaptation", african)) if cfg.adapt else None
    adapt = adapt if adapt is not None and len(adapt) >= MIN_FRAMES else None  # too few frames for statistics
    variants = {"raw": (clf, test)}
    if adapt is not None:
        variants["adapted"] = (adapt_classifier(clf, adapt.frames, "African adaptation part"), test)
        save_classifier(variants["adapted"][0], out / "classifier_adapted")
    if cfg.zooms:
        variants["zoomed"] = (zoom_classifier(clf, cfg.zooms), test)
        if adapt is not None:
            variants["adapted_zoomed"] = (zoom_classifier(clf, cfg.zooms, adapt.frames, "African adaptation part"),
                                          test)
    if clf_t is not None:
        variants["translated"] = (clf_t, test)
        if adapt is not None and cfg.zooms:
            variants["translated_adapted_zoomed"] = (
                zoom_classifier(clf_t, cfg.zooms, adapt.frames, "African adaptation part"), test)
    if translator is not None:
        variants["harmonized"] = (clf, harmonize_samples(test, translator))
        if adapt is not None:
            frames = harmonize_samples(adapt, translator).frames
            variants["harmonized_adapted"] = (adapt_classifier(clf, frames, "African adaptation part, harmonized"),
                                              variants["harmonized"][1])
    rows = []
    for name, (model, s) in variants.items():
        summ = write_evaluation(classify_samples(model, s), clf.classes, out / name, f"Spain -> Africa test, {name}")
        rows.append(summ.assign(variant=name))
    table = pd.concat(rows, ignore_index=True)
    table = table[["variant", "domain", *[c for c in table.columns if c not in ("variant", "domain")]]]
    atomic_write_text(out / "cross_domain.csv", table.to_csv(index=False))
    return table


__all__ = ["SHARED_PLANES", "CrossDomainConfig", "spain_to_africa"]
