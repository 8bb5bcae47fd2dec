"""The plane classifier as an embedding: features for FID/KID, a perceptual distance, and `evaluate`'s hook."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from fake_runs import make_dataset, make_run
from plane_data import make_prepared
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.judges.plane.api import train_on_dataset
from sonoshift.judges.plane.augment import AugmentConfig
from sonoshift.judges.plane.data import load_samples
from sonoshift.judges.plane.embedding import PlanePerceptualDistance, load_plane_extractor
from sonoshift.judges.plane.net import NetConfig
from sonoshift.judges.plane.train import ClassifierConfig, ClassifierTrainConfig
from sonoshift.metrics.fid import fid_kid


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb")
    data = make_prepared(root / "data")
    cfg = ClassifierConfig(image_size=32, net=NetConfig(stem=8, widths=(16, 32), dropout=0.0),
                           train=ClassifierTrainConfig(steps=80, batch_size=12, lr=3e-3, eval_every=20, patience=3),
                           augment=AugmentConfig(enabled=False))
    train_on_dataset(data, root / "clf", cfg, progress=False)
    return root / "clf", data


def _unit(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float().div(255).unsqueeze(1)


def test_features_are_the_classifier_penultimate_layer(clf_dir):
    path, data = clf_dir
    ext, label = load_plane_extractor(path)
    assert "plane-classifier features" in label and "not comparable to Inception-FID" in label
    x = _unit(load_samples(data, ["test"], 32).frames)
    f = ext(x)
    assert f.shape == (len(x), 32)
    with torch.no_grad():
        ref = ext.net.features(x * 2 - 1)
    torch.testing.assert_close(f, ref)
    # any input size is resized to the classifier's
    assert ext(torch.rand(2, 1, 48, 40)).shape == (2, 32)


def test_fid_separates_classes_in_the_embedding(clf_dir):
    path, data = clf_dir
    ext, _ = load_plane_extractor(path)
    s = load_samples(data, ["train", "val", "test"], 32)
    lab = np.array(s.labels)
    ring, bars = _unit(s.frames[lab == "ring"]), _unit(s.frames[lab == "bars"])
    half = len(ring) // 2
    same = fid_kid(ring[:half], ring[half:], ext)["fid"]
    other = fid_kid(ring[:half], bars[:half], ext)["fid"]
    assert other > 5 * same


def test_perceptual_distance_matches_a_hook_reference(clf_dir):
    path, data = clf_dir
    from sonoshift.judges.plane.checkpoint import load_classifier

    clf = load_classifier(path)
    d = PlanePerceptualDistance(clf)
    s = load_samples(data, ["test"], 32)
    a, b = _unit(s.frames[:4]), _unit(s.frames[4:8])
    got = d(a, b)
    # reference: forward hooks on the stem and stages, numpy arithmetic
    feats: list = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: feats.append(o.detach().numpy()))
             for m in clf.model.body if isinstance(m, torch.nn.Sequential)]
    with torch.no_grad():
        clf.model.features(a * 2 - 1)
        clf.model.features(b * 2 - 1)
    for h in hooks:
        h.remove()
    n = len(feats) // 2
    per = []
    for fa, fb in zip(feats[:n], feats[n:]):
        na = fa / (np.sqrt((fa**2).sum(1, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb**2).sum(1, keepdims=True)) + 1e-10)
        per.append(((na - nb) ** 2).sum(1).mean(axis=(1, 2)))
    np.testing.assert_allclose(got.numpy(), np.mean(per, 0), rtol=1e-5)
    assert torch.all(d(a, a) == 0) and torch.all(got > 0)
    torch.testing.assert_close(d(b, a), got)


def test_evaluate_uses_the_plane_extractor(clf_dir, tmp_path):
    path, _ = clf_dir
    ds = tmp_path / "ds"
    rows = make_dataset(ds, n=3)
    run = make_run(tmp_path / "run", ds, rows, "cyclegan", "cpu/cyclegan", lambda s, g, i: g)
    evaluate_run(run, EvaluateConfig(modes=("gt",), lpips="none", feature_extractor=str(path)), progress=False)
    with open(run / "metrics_dataset.csv", newline="") as f:
        fid = [r for r in csv.DictReader(f) if r["metric"] == "fid"]
    assert fid and "plane-classifier features" in fid[0]["note"]
    assert float(fid[0]["value"]) == pytest.approx(0.0, abs=1e-6)  # outputs equal the ground truth
