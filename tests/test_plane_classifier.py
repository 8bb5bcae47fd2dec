"""Plane classifier: augmentation, training with early stopping, checkpoints, evaluation, predict CSV, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from plane_data import CLASSES, TINY, make_prepared, prepared, trained  # noqa: F401 (fixtures)
from sonoshift.cli.main import app
from sonoshift.config import from_dict
from sonoshift.engine.checkpoint import read_model
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.api import evaluate_on_dataset, predict_files, train_on_dataset
from sonoshift.judges.plane.augment import AugmentConfig, augment
from sonoshift.judges.plane.checkpoint import load_classifier
from sonoshift.judges.plane.cv import patient_folds
from sonoshift.judges.plane.data import encode, load_samples, resolve_classes, to_input
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.judges.plane.train import ClassifierConfig, ClassifierTrainConfig, predict_proba, train_classifier



def test_augment_disabled_is_identity_and_enabled_is_seeded():
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    assert torch.equal(augment(x, AugmentConfig(enabled=False), torch.Generator().manual_seed(0)), x)
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert a.min() >= -1 and a.max() <= 1


def test_augment_flip_only_flips():
    x = torch.arange(16.0).reshape(1, 1, 4, 4) / 8 - 1
    cfg = AugmentConfig(rotate_deg=0, scale=0, translate=0, gamma=0, speckle=0)
    outs = {tuple(augment(x, cfg, torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(20)}
    assert outs == {tuple(x.flatten().tolist()), tuple(x.flip(-1).flatten().tolist())}


def test_net_features_are_penultimate():
    net = PlaneNet(3, NetConfig(stem=4, widths=(8, 8), dropout=0.0)).eval()
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(net.head(net.features(x)), net(x))
    assert net.features(x).shape == (2, 8)


def test_unknown_class_names_are_clear_errors():
    with pytest.raises(SonoshiftError, match="unknown class name 'heart'"):
        resolve_classes(["ring", "bars"], ["ring", "heart"])
    with pytest.raises(SonoshiftError, match="unknown class name 'heart'"):
        encode(["ring", "heart"], ("ring", "bars"))
    assert encode(["ring", "heart"], ("ring", "bars"), strict=False).tolist() == [0, -1]


def test_load_samples_reads_labels_domains_patients(prepared):
    s = load_samples(prepared, ["train"], 16)
    assert s.frames.shape == (2 * 6 * 3, 16, 16) and s.frames.dtype == np.uint8
    assert set(s.labels) == set(CLASSES) and set(s.domains) == {"A", "B"}
    assert len(set(s.patients)) == 12


def test_training_learns_and_checkpoint_describes_itself(trained, prepared):
    clf, out = trained
    assert clf.classes == CLASSES
    assert clf.info["validation"]["macro_f1"] >= 0.8  # 3 separable shapes: chance is 1/3
    ckpt = read_model(out)
    assert ckpt.method == "plane_classifier"
    st = ckpt.state
    assert st["classes"] == list(CLASSES) and st["image_size"] == 32 and st["input_range"] == [-1.0, 1.0]
    assert st["info"]["validation"]["macro_f1"] == clf.info["validation"]["macro_f1"]
    assert from_dict(ClassifierConfig, st["config"]) == TINY
    assert json.loads((out / "classifier.json").read_text())["classes"] == list(CLASSES)
    # the stored weights are the best validation step, and load back to the same predictions
    back = load_classifier(out)
    x = to_input(load_samples(prepared, ["test"], 32).frames)
    np.testing.assert_allclose(predict_proba(back.model, x), predict_proba(clf.model, x), atol=1e-6)


def test_training_is_reproducible(prepared, trained):
    from sonoshift.judges.plane.api import fit

    tr = load_samples(prepared, ["train"], 32)
    va = load_samples(prepared, ["val"], 32)
    cfg = ClassifierConfig(image_size=32, net=TINY.net, augment=AugmentConfig(),
                           train=ClassifierTrainConfig(steps=6, batch_size=8, eval_every=3, seed=5))
    a, b = fit(tr, va, cfg, progress=False), fit(tr, va, cfg, progress=False)
    for (k, va_), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va_, vb), k


def test_early_stopping_stops_before_the_step_budget(prepared, tmp_path):
    cfg = ClassifierConfig(image_size=32, net=TINY.net, augment=AugmentConfig(enabled=False),
                           train=ClassifierTrainConfig(steps=2000, batch_size=12, lr=3e-3, eval_every=10, patience=2))
    clf = train_on_dataset(prepared, tmp_path / "c", cfg, progress=False)
    assert clf.info["steps_run"] < 2000
    hist = clf.info["history"]
    best = max(h["val_macro_f1"] for h in hist)
    assert clf.info["validation"]["macro_f1"] == pytest.approx(best)
    # stopped exactly `patience` evaluations after the first best one
    first_best = next(i for i, h in enumerate(hist) if h["val_macro_f1"] == best)
    assert len(hist) == first_best + 1 + 2


def test_evaluate_per_domain_and_confusion_png(trained, prepared, tmp_path):
    clf, out = trained
    summary = evaluate_on_dataset(out, prepared, tmp_path / "ev")
    assert list(summary["domain"]) == ["A", "B", "all"]
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    assert len(pred) == 2 * 2 * 3
    # the "all" row is the pooled accuracy, computed here independently from the predictions
    assert summary.iloc[-1]["accuracy"] == pytest.approx((pred["label"] == pred["pred"]).mean())
    a = pred[pred["domain"] == "A"]
    assert summary.iloc[0]["accuracy"] == pytest.approx((a["label"] == a["pred"]).mean())
    for c in CLASSES:
        rows = pred[pred["label"] == c]
        assert summary.iloc[-1][f"recall_{c}"] == pytest.approx((rows["pred"] == c).mean())
    png = Image.open(tmp_path / "ev" / "confusion.png")
    assert png.size[0] > 100


def test_evaluate_rejects_unknown_labels(trained, tmp_path):
    clf, out = trained
    other = make_prepared(tmp_path / "d")
    man = other / "manifest_test.csv"
    man.write_text(man.read_text().replace(",ring", ",heart"))
    with pytest.raises(SonoshiftError, match="unknown class name 'heart'"):
        evaluate_on_dataset(out, other, tmp_path / "ev")
    summary = evaluate_on_dataset(out, other, tmp_path / "ev2", drop_unknown=True)
    assert summary.iloc[-1]["n"] == 2 * 2 * 2


def test_predict_writes_csv_for_files_and_folders(trained, prepared, tmp_path):
    clf, out = trained
    folder = prepared / "frames" / "A" / "A08"
    files = sorted(folder.glob("*/00000.png"))
    flat = tmp_path / "imgs"
    flat.mkdir()
    for f in files:
        (flat / f"{f.parent.name}.png").write_bytes(f.read_bytes())
    df = predict_files(out, [flat, files[0]], tmp_path / "p.csv", crop=False)
    assert len(df) == len(files) + 1
    back = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(back[[f"p_{c}" for c in CLASSES]].sum(1), 1.0, atol=1e-6)
    assert (back["pred"].isin(CLASSES)).all()


def test_patient_folds_keep_patients_together():
    doms = ["A"] * 6 + ["B"] * 4
    pats = ["1", "1", "2", "3", "4", "5", "1", "2", "3", "3"]
    f = patient_folds(doms, pats, 3, seed=0)
    assert f[0] == f[1] and f[8] == f[9]
    assert sorted(set(f[:6].tolist())) == [0, 1, 2]  # 5 patients dealt over 3 folds
    assert patient_folds(doms, pats, 3, seed=0).tolist() == f.tolist()
    assert sorted(set(patient_folds(doms, pats, 5, seed=0).tolist())) == [0, 1, 2, 3, 4]  # A has 5 patients
    message = r"6-fold cross-validation needs a domain with at least 6 patients .* the largest, 'A', has 5, so use"
    with pytest.raises(SonoshiftError, match=message):
        patient_folds(doms, pats, 6, seed=0)


@pytest.mark.parametrize("command", ["predict", "adapt"])
def test_a_frame_without_a_field_of_view_names_the_no_crop_option(trained, tmp_path, command):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(folder / "blank.png")
    out = tmp_path / ("p.csv" if command == "predict" else "adapted")
    r = CliRunner().invoke(app, ["classify", command, str(trained[1]), str(folder), "-o", str(out)])
    assert r.exit_code != 0 and isinstance(r.exception, SonoshiftError), r.output
    assert "blank.png: no ultrasound field of view" in str(r.exception)
    assert str(r.exception).endswith("; pass --no-crop to keep whole frames.")  # classify takes no crop.method
    assert not out.exists()


def test_cv_with_more_folds_than_patients_is_refused_before_training(prepared, tmp_path):
    r = CliRunner().invoke(app, ["classify", "cv", str(prepared), "-o", str(tmp_path / "cv"), "--folds", "500",
                                 "train.steps=2"])
    assert r.exit_code != 0 and isinstance(r.exception, SonoshiftError), r.output
    assert "500-fold cross-validation needs a domain with at least 500 patients" in str(r.exception)
    assert not (tmp_path / "cv").exists()


def test_cli_train_evaluate_predict(prepared, tmp_path):
    runner = CliRunner()
    out = tmp_path / "c"
    sets = ["--set", "image_size=32", "--set", "net.stem=8", "--set", "net.widths=[16, 32]",
            "--set", "train.steps=10", "--set", "train.eval_every=5", "--set", "augment.enabled=false"]
    r = runner.invoke(app, ["classify", "train", str(prepared), "-o", str(out), *sets])
    assert r.exit_code == 0, r.output
    assert "validation: accuracy" in r.output
    r = runner.invoke(app, ["classify", "evaluate", str(out), str(prepared), "-o", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output and "all" in r.output
    r = runner.invoke(app, ["classify", "train", str(prepared), "-o", str(tmp_path / "x"), *sets,
                            "--set", "classes=[ring, heart]"])
    assert r.exit_code != 0 and not (tmp_path / "x").exists()


def test_cross_domain_scores_only_the_test_part(trained, prepared, tmp_path):
    from sonoshift.judges.plane.cross_domain import spain_to_africa

    clf, out = trained
    target = make_prepared(tmp_path / "target", seed=1)
    rule = {"A": {"adaptation": ["A00", "A01"], "test": ["A02", "A03"]},
            "B": {"adaptation": ["B00"], "test": ["B09"]}, "seed": 0}
    table = spain_to_africa(prepared, target, tmp_path / "x", classifier=out, african=rule)
    assert list(table["variant"].unique()) == ["raw", "adapted", "zoomed", "adapted_zoomed"]
    pred = pd.read_csv(tmp_path / "x" / "raw" / "predictions.csv", dtype={"patient_id": str})
    assert sorted(pred["patient_id"].unique()) == ["A02", "A03", "B09"]
    assert (table[table["domain"] == "all"]["n"] == 3 * 3).all()


def _tiny_cyclegan(tmp_path) -> Path:
    """A CycleGAN run (32 px, two steps) on random frames of domains a and b."""
    from sonoshift.config import load_config, to_dict
    from sonoshift.data.datasets import UnpairedDataset
    from sonoshift.engine.loop import train
    from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig

    data = tmp_path / "cg"
    (data / "cache" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in ("a", "b"):
        np.save(data / f"cache/train/{d}.npy", rng.integers(0, 256, (4, 32, 32), dtype=np.uint8))
    (data / "dataset.json").write_text("{}")
    cfg = load_config(CycleGANConfig, None, ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=2",
                                             "train.max_steps=2", "train.device=cpu", "train.tensorboard=false",
                                             "train.image_every=0"])
    train(CycleGAN(cfg, torch.device("cpu"), (32, 32)), UnpairedDataset(data, "train", "a", "b"), cfg.train,
          tmp_path / "run", full_config=to_dict(cfg), progress=False)
    return tmp_path / "run"


def test_cross_domain_harmonized_variant(trained, prepared, tmp_path):
    from sonoshift.judges.plane.api import harmonize_samples
    from sonoshift.judges.plane.cross_domain import spain_to_africa

    _tiny_cyclegan(tmp_path)
    s = load_samples(prepared, ["test"], 32)
    s = s.with_frames(np.where(np.arange(32)[None, None, :] < 3, 0, s.frames).astype(np.uint8))  # a black margin
    h = harmonize_samples(s, tmp_path / "run")
    assert h.frames.shape == s.frames.shape and not np.array_equal(h.frames, s.frames)
    assert (h.frames[:, :, :3] == 0).all() and h.labels == s.labels

    clf, out = trained
    rule = {"A": {"adaptation": [], "test": ["A08", "A09"]}, "B": {"adaptation": [], "test": ["B08"]}, "seed": 0}
    table = spain_to_africa(prepared, prepared, tmp_path / "x", classifier=out, african=rule,
                            translator=tmp_path / "run")
    assert list(table["variant"].unique()) == ["raw", "zoomed", "harmonized"]
    assert (tmp_path / "x" / "harmonized" / "confusion.png").is_file()


def test_cross_domain_translated_variants_train_on_spanish_plus_reverse_translations(prepared, tmp_path):
    """With a CycleGAN, a second classifier trains on the training frames plus their copies made by the reverse
    generator (labels kept) and is scored raw and as the re-normalized zoom ensemble."""
    from sonoshift.inference.translate import run_translator, to_signed, to_uint8
    from sonoshift.judges.plane.api import harmonize_samples
    from sonoshift.judges.plane.cross_domain import CrossDomainConfig, spain_to_africa
    from sonoshift.methods import load_translator

    run = _tiny_cyclegan(tmp_path)
    s = load_samples(prepared, ["train"], 32)
    back = harmonize_samples(s, run, reverse=True)
    ref = to_uint8(run_translator(load_translator(run, reverse=True), to_signed(s.frames)))
    assert np.array_equal(back.frames, np.where(s.frames > 0, ref, 0)) and back.labels == s.labels
    assert not np.array_equal(back.frames, harmonize_samples(s, run).frames)  # the other generator
    both = s.plus(back)
    assert len(both) == 2 * len(s) and both.labels == s.labels * 2 and np.array_equal(both.frames[len(s):], back.frames)

    rule = {"A": {"adaptation": ["A06", "A07"], "test": ["A08", "A09"]},
            "B": {"adaptation": ["B06", "B07"], "test": ["B08"]}, "seed": 0}
    table = spain_to_africa(prepared, prepared, tmp_path / "x", CrossDomainConfig(classifier=TINY), african=rule,
                            translator=run)
    assert list(table["variant"].unique()) == ["raw", "adapted", "zoomed", "adapted_zoomed", "translated",
                                               "translated_adapted_zoomed", "harmonized", "harmonized_adapted"]
    info = json.loads((tmp_path / "x" / "classifier_translated" / "classifier.json").read_text())["info"]
    n_train = len(load_samples(prepared, ["train"], 32))
    assert info["data"]["translated_copies"] == n_train
    off = spain_to_africa(prepared, prepared, tmp_path / "y", CrossDomainConfig(classifier=TINY, translated=False),
                          african=rule, translator=run)
    assert "translated" not in set(off["variant"])
    raw = table[(table["variant"] == "raw") & (table["domain"] == "all")]["accuracy"].item()
    assert raw == off[(off["variant"] == "raw") & (off["domain"] == "all")]["accuracy"].item()  # same raw model


def test_same_seed_same_model_whatever_the_global_rng_state():
    # dropout draws from the global RNG: training seeds it inside a fork, so earlier draws cannot leak in
    cfg = ClassifierConfig(image_size=16, net=NetConfig(stem=4, widths=(8,), dropout=0.5),
                           train=ClassifierTrainConfig(steps=8, batch_size=4, seed=3),
                           augment=AugmentConfig(enabled=False))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 16, 16, generator=g) * 2 - 1, np.arange(12) % 2
    torch.manual_seed(1)
    a, _ = train_classifier(x, y, ("a", "b"), cfg, progress=False)
    torch.rand(100)  # another global RNG state
    state = torch.get_rng_state()
    b, _ = train_classifier(x, y, ("a", "b"), cfg, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left as it was
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
