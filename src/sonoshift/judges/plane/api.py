"""The plane classifier's stages as plain functions: train on a prepared dataset, evaluate a split (optionally
after harmonizing the frames with a translator), predict loose image files and DICOM stills / cine loops into a
CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.atomic import atomic_write_text
from sonoshift.data.frame_inputs import FrameRef, frame_column, list_frames, read_frame
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.checkpoint import PlaneClassifier, config_dict, load_classifier, save_classifier
from sonoshift.judges.plane.data import Samples, encode, load_samples, resolve_classes, to_input
from sonoshift.judges.plane.evaluate import classify_samples, write_evaluation
from sonoshift.judges.plane.train import ClassifierConfig, predict_proba, train_classifier

PREDICTIONS = "plane predictions"  # the kind of `classify predict`'s CSV in its folder's ledger


def fit(
    train: Samples, val: Samples, cfg: ClassifierConfig, *, data_info: dict | None = None, progress: bool = True,
    device: str | torch.device = "cpu",
) -> PlaneClassifier:
    """Train on ``train`` (labels outside ``cfg.classes`` dropped when classes are given), early-stop on ``val``."""
    classes = resolve_classes(train.labels, cfg.classes)
    train = train.subset([l in classes for l in train.labels])
    val = val.subset([l in classes for l in val.labels])
    x, y = to_input(train.frames).to(device), encode(train.labels, classes)
    xv, yv = to_input(val.frames).to(device), encode(val.labels, classes)
    model, info = train_classifier(x, y, classes, cfg, xv, yv, progress=progress)
    info["data"] = {**(data_info or {}), "train_domains": sorted(set(train.domains)),
                    "train_patients": len(set(train.patients)), "val_frames": len(val)}
    return PlaneClassifier(model=model.cpu(), classes=classes, image_size=cfg.image_size, label=cfg.label,
                           config=config_dict(cfg), info=info)


def train_on_dataset(
    dataset: str | Path, out: str | Path, cfg: ClassifierConfig, *, progress: bool = True,
    device: str | torch.device = "cpu",
) -> PlaneClassifier:
    """Train on the prepared dataset's train split, early-stop on its val split, write the checkpoint to ``out``.
    African test-part patients are left out of both (the African rule, ``african.py``)."""
    from sonoshift.judges.plane.african import without_test_part

    doms = cfg.domains or None
    train = without_test_part(load_samples(dataset, ["train"], cfg.image_size, label=cfg.label, domains=doms),
                              f"training split of {dataset}")
    val = without_test_part(load_samples(dataset, ["val"], cfg.image_size, label=cfg.label, domains=doms),
                            f"validation split of {dataset}")
    if len(train) == 0:
        raise SonoshiftError(f"prepared dataset {dataset} has no training frame with a {cfg.label!r} label.")
    clf = fit(train, val, cfg, data_info={"dataset": str(Path(dataset).resolve()), "splits": "train / val"},
              progress=progress, device=device)
    save_classifier(clf, out)
    return clf


def harmonize_samples(samples: Samples, translator: str | Path, device: str | torch.device = "cpu", *,
                      reverse: bool = False) -> Samples:
    """The same samples with every frame translated by the translator checkpoint/run at ``translator`` (its
    target -> source generator with ``reverse``: CycleGAN only); frames stay at their size; pixels that were 0
    outside the field of view stay 0."""
    from sonoshift.methods import load_translator
    from sonoshift.inference.translate import run_translator, to_signed, to_uint8

    model = load_translator(translator, device=torch.device(device), **({"reverse": True} if reverse else {}))
    out = to_uint8(run_translator(model, to_signed(samples.frames), device=torch.device(device)))
    out = np.where(samples.frames > 0, out, 0).astype(np.uint8)
    return samples.with_frames(out)


def evaluate_on_dataset(
    classifier: str | Path | PlaneClassifier, dataset: str | Path, out: str | Path, *, split: str = "test",
    translator: str | Path | None = None, drop_unknown: bool = False,
) -> pd.DataFrame:
    """Score the classifier on one split of a prepared dataset (raw, or harmonized by ``translator``); writes
    predictions.csv, summary.csv (per domain + ``all``) and confusion.png into ``out``; returns the summary."""
    clf = classifier if isinstance(classifier, PlaneClassifier) else load_classifier(classifier)
    samples = load_samples(dataset, [split], clf.image_size, label=clf.label)
    if drop_unknown:
        samples = samples.subset([l in clf.classes for l in samples.labels])
    if len(samples) == 0:
        raise SonoshiftError(f"split {split!r} of {dataset} has no frame with a {clf.label!r} label to score.")
    if translator is not None:
        samples = harmonize_samples(samples, translator)
    table = classify_samples(clf, samples)
    title = f"{Path(dataset).name} {split}" + (f" harmonized by {Path(translator).name}" if translator else "")
    return write_evaluation(table, clf.classes, out, title)


def prepare_like_training(frame: np.ndarray, size: int, crop: bool, name: str,
                          hint: str = "pass --no-crop to keep whole frames") -> np.ndarray:
    """A loose frame in the training geometry: field-of-view crop (as `prepare` does) and pad-resize to size.
    ``hint``: how the caller's user keeps whole frames when no field of view is found (default: `classify`'s)."""
    from sonoshift.data.crop import find_fov
    from sonoshift.data.resize import ResizeConfig, crop_resize_stack, resize_stack

    cfg = ResizeConfig(size=size)
    if not crop:
        return resize_stack(frame[None], cfg)[0]
    return crop_resize_stack(frame[None], find_fov(frame[None], name=name, hint=hint), cfg)[0][0]


def read_like_training(files: Sequence[FrameRef | Path], size: int, crop: bool, progress: bool = True,
                       hint: str = "pass --no-crop to keep whole frames") -> np.ndarray:
    """Image files or DICOM frames (``data.frame_inputs``) as (N, size, size) uint8 frames in the training
    geometry (``prepare_like_training``, ``hint`` included), with a progress bar."""
    from sonoshift.progress import track

    return np.stack([prepare_like_training(read_frame(f), size, crop, str(f), hint)
                     for f in track(files, "read frames", disable=not progress)])


def predict_files(
    classifier: str | Path, inputs: Sequence[str | Path], out_csv: str | Path, *, crop: bool = True,
    adapt: bool = False, progress: bool = True, zooms: Sequence[float] | None = None, force: bool = False,
) -> pd.DataFrame:
    """Classify image files and DICOMs (and those in folders): CSV with path, frame (a cine loop's frame index,
    empty for a still), pred, confidence, p_<class> per frame.
    ``adapt``: first re-normalize the classifier on these same frames (AdaBN, ``adapt.py``; no label used), for a
    batch of frames from one new scanner; with ``zooms`` as a test-time zoom ensemble re-normalized at each zoom.
    ``out_csv`` follows the output policy of :mod:`sonoshift.outputs` (a file sonoshift did not write is refused;
    its own predictions with other settings are replaced only with ``force``)."""
    from sonoshift.outputs import claim_file, record_file, settings_key

    if zooms is not None and not adapt:
        raise SonoshiftError("zooms need adapt: a zoom ensemble helps only once each zoom is re-normalized.")
    key = settings_key({"classifier": str(Path(classifier).resolve()), "crop": crop, "adapt": adapt,
                        "inputs": [str(Path(i).resolve()) for i in inputs],
                        "zooms": list(zooms) if zooms is not None else None})
    claim_file(out_csv, PREDICTIONS, key, force=force)
    clf = load_classifier(classifier)
    files = list_frames(inputs)
    frames = read_like_training(files, clf.image_size, crop, progress)
    if adapt:
        from sonoshift.judges.plane.adapt import adapt_classifier, zoom_classifier

        clf = (adapt_classifier(clf, frames, "the predicted frames") if zooms is None
               else zoom_classifier(clf, zooms, frames, "the predicted frames"))
    probs = predict_proba(clf.model, to_input(frames))
    df = pd.DataFrame({"path": [str(f.path) for f in files], "frame": frame_column(files),
                       "pred": [clf.classes[i] for i in probs.argmax(1)], "confidence": probs.max(1)})
    for i, c in enumerate(clf.classes):
        df[f"p_{c}"] = probs[:, i]
    atomic_write_text(out_csv, df.to_csv(index=False))
    record_file(out_csv, PREDICTIONS, key)
    return df
