"""Patient-wise K-fold cross-validation of the plane classifier on one prepared dataset (all its splits pooled).

Inside each domain the sorted patient ids are shuffled by ``numpy.random.default_rng([seed, *domain bytes])``
and dealt round-robin into ``k`` folds. Fold f is the test part, fold (f + 1) mod k the validation part (early
stopping), the rest trains. Each fold's assignment passes the data pipeline's leakage check. Predictions of the
k test parts are pooled: every frame is scored once, by a model that never saw its patient. African test-part
patients (``african.py``) are left out before folding: on the African set the CV runs inside the adaptation part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.data.splits import check_leakage
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.african import without_test_part
from sonoshift.judges.plane.api import fit
from sonoshift.judges.plane.checkpoint import PlaneClassifier
from sonoshift.judges.plane.data import Samples, load_samples
from sonoshift.judges.plane.evaluate import classify_samples, summarize_table, write_evaluation
from sonoshift.judges.plane.train import ClassifierConfig


def _check_enough_patients(domains, patients, k: int) -> None:
    """Each domain's patients are dealt over the folds on their own, so with more folds than the largest domain
    has patients some fold would test nobody; refuse that before any training."""
    counts: dict[str, set[str]] = {}
    for d, p in zip(domains, patients):
        counts.setdefault(d, set()).add(p)
    most, domain = max(((len(v), d) for d, v in counts.items()), default=(0, ""))
    if k > most:
        hint = f", so use at most {most} folds" if most >= 3 else ""
        raise SonoshiftError(f"{k}-fold cross-validation needs a domain with at least {k} patients (folds are dealt "
                             f"per domain); the largest, {domain!r}, has {most}{hint}.")


def patient_folds(domains, patients, k: int, seed: int) -> np.ndarray:
    """Fold id (N,) per sample; all samples of a (domain, patient) share a fold."""
    if k < 3:
        raise SonoshiftError(f"cross-validation needs at least 3 folds (test, validation, training), got {k}.")
    _check_enough_patients(domains, patients, k)
    fold_of: dict[tuple[str, str], int] = {}
    for d in sorted(set(domains)):
        ids = sorted({p for dd, p in zip(domains, patients) if dd == d})
        perm = np.random.default_rng([int(seed), *d.encode("utf-8")]).permutation(len(ids))
        for pos, i in enumerate(perm):
            fold_of[(d, ids[i])] = pos % k
    return np.array([fold_of[(d, p)] for d, p in zip(domains, patients)], dtype=np.int64)


def _check(samples: Samples, parts: dict[str, np.ndarray]) -> None:
    splits: dict = {}
    for name, mask in parts.items():
        for d, p in zip(np.array(samples.domains)[mask], np.array(samples.patients)[mask]):
            splits.setdefault(d, {"train": [], "val": [], "test": []})[name].append(f"{d}/{p}")
    check_leakage({d: {s: sorted(set(v)) for s, v in parts_.items()} for d, parts_ in splits.items()}, "CV fold")


def cross_validate(
    dataset: str | Path, out: str | Path, cfg: ClassifierConfig, *, k: int = 5, seed: int = 0,
    progress: bool = True, african: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run k-fold patient-wise CV; writes predictions.csv, summary.csv, confusion.png and folds.csv to ``out``.

    Returns (pooled summary per domain + ``all``, per-fold accuracy / macro-F1 table). ``african``: the
    adaptation/test rule whose test part is left out (default: the project's ``african_split.json``)."""
    samples = load_samples(dataset, ["train", "val", "test"], cfg.image_size, label=cfg.label,
                           domains=cfg.domains or None)
    if cfg.classes:
        samples = samples.subset([l in cfg.classes for l in samples.labels])
    samples = without_test_part(samples, f"cross-validation on {dataset}", african)
    if len(samples) == 0:
        raise SonoshiftError(f"prepared dataset {dataset} has no frame with a {cfg.label!r} label.")
    folds = patient_folds(samples.domains, samples.patients, k, seed)
    tables, per_fold, classes = [], [], None
    for f in range(k):
        test, val = folds == f, folds == (f + 1) % k
        train = ~(test | val)
        _check(samples, {"train": train, "val": val, "test": test})
        clf: PlaneClassifier = fit(samples.subset(train), samples.subset(val), cfg, progress=progress)
        classes = clf.classes
        t = classify_samples(clf, samples.subset(test), strict=False)
        t["fold"] = f
        tables.append(t)
        s = summarize_table(t, clf.classes).iloc[-1]
        per_fold.append({"fold": f, "n": int(s["n"]), "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                         "best_step": clf.info["best_step"]})
    table = pd.concat(tables, ignore_index=True)
    summary = write_evaluation(table, classes, out, f"{Path(dataset).name}: {k}-fold patient-wise CV")
    folds_df = pd.DataFrame(per_fold)
    atomic_write_text(Path(out) / "folds.csv", folds_df.to_csv(index=False))
    return summary, folds_df
