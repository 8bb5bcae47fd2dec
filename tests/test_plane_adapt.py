"""AdaBN for the plane classifier (judges/plane/adapt.py): BatchNorm statistics against a direct computation, the
scale invariance it buys, the adapted checkpoint, the CLI and its refusals, and the Spain -> Africa variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from plane_data import make_prepared, prepared, trained  # noqa: F401 (fixtures)
from sonoshift.cli.main import app
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.adapt import MIN_FRAMES, adapt_classifier, recompute_batchnorm, zoom_classifier
from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS
from sonoshift.judges.plane.checkpoint import load_classifier
from sonoshift.judges.plane.data import load_samples
from sonoshift.judges.plane.net import NetConfig, PlaneNet


def _net(seed: int = 0) -> PlaneNet:
    torch.manual_seed(seed)
    net = PlaneNet(3, NetConfig(stem=8, widths=(16, 32), dropout=0.0))
    with torch.no_grad():  # training-like statistics, far from what the test inputs give
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net.eval()


def test_first_norm_gets_the_statistics_of_its_input():
    net = _net()
    x = torch.rand(20, 1, 32, 32) * 2 - 1
    adapted = recompute_batchnorm(net, x)
    conv, bn = adapted.body[0], adapted.body[1]
    h = F.conv2d(x, conv.weight.detach(), stride=2, padding=2).double()  # direct computation of what the norm sees
    np.testing.assert_allclose(bn.running_mean.double().numpy(), h.mean(dim=(0, 2, 3)).numpy(), atol=1e-5)
    n = h.shape[0] * h.shape[2] * h.shape[3]
    var = h.var(dim=(0, 2, 3), unbiased=False).numpy() * n / (n - 1)
    np.testing.assert_allclose(bn.running_var.double().numpy(), var, rtol=1e-4)
    # every learned weight is kept; the original model is untouched; the copy is in eval mode
    for (k, a), (_, b) in zip(net.state_dict().items(), adapted.state_dict().items()):
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(a, b), k
    assert not torch.equal(net.body[1].running_mean, bn.running_mean)
    assert not adapted.training and all(not m.training for m in adapted.modules())


def test_every_norm_gets_the_whole_set_statistics_whatever_the_batch_size():
    net, x = _net(1), torch.rand(40, 1, 32, 32) * 2 - 1
    one, small = recompute_batchnorm(net, x, batch_size=40), recompute_batchnorm(net, x, batch_size=7)
    norms = [m for m in one.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for a, b in zip(norms, (m for m in small.modules() if isinstance(m, torch.nn.BatchNorm2d))):
        torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.running_var, b.running_var, atol=1e-5, rtol=1e-4)
    # the last norm against a direct computation: the features entering it in the adapted network (eval mode)
    seen = []
    hook = norms[-1].register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach().double()))
    one(x)
    hook.remove()
    np.testing.assert_allclose(norms[-1].running_mean.double().numpy(), seen[0].mean(dim=(0, 2, 3)).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(norms[-1].running_var.double().numpy(),
                               seen[0].var(dim=(0, 2, 3), unbiased=True).numpy(), rtol=1e-4, atol=1e-6)


def test_adapted_model_is_invariant_to_an_intensity_scale():
    # conv (no bias, zero padding) of a * x is a * conv(x); a norm re-estimated on the scaled frames removes a again
    net = _net(2)
    x = torch.rand(24, 1, 32, 32) * 2 - 1
    ref = recompute_batchnorm(net, x)(x).detach()
    scaled = 0.4 * x
    torch.testing.assert_close(recompute_batchnorm(net, scaled)(scaled).detach(), ref, atol=2e-3, rtol=2e-3)
    assert (recompute_batchnorm(net, x)(scaled) - ref).abs().max() > 0.05  # without adapting it is not


def test_refusals():
    net = _net()
    with pytest.raises(SonoshiftError, match="at least 8 unlabelled frames"):
        recompute_batchnorm(net, torch.zeros(MIN_FRAMES - 1, 1, 32, 32))
    with pytest.raises(SonoshiftError, match="NaN"):
        recompute_batchnorm(net, torch.full((MIN_FRAMES, 1, 32, 32), float("nan")))


def test_adapted_checkpoint_and_cli(trained, prepared, tmp_path):
    clf, trained = trained
    other = load_samples(prepared, ["train"], 32, domains=["B"])
    adapted = adapt_classifier(clf, other.frames, "domain B")
    assert adapted.info["adapted"]["frames"] == len(other) and adapted.classes == clf.classes
    runner = CliRunner()
    before = sorted(p.read_bytes() for p in trained.rglob("*.safetensors"))
    folder = prepared / "frames" / "B"  # nested patient / video folders: searched recursively
    r = runner.invoke(app, ["classify", "adapt", str(trained), str(folder), "-o", str(tmp_path / "ad"), "--no-crop"])
    assert r.exit_code == 0, r.output
    back = load_classifier(tmp_path / "ad")
    n_b = len(list(folder.rglob("*.png")))
    assert f"adapted on {n_b} unlabelled frames" in r.output and back.info["adapted"]["frames"] == n_b
    assert back.model.body[1].running_mean.shape == clf.model.body[1].running_mean.shape
    assert not torch.equal(back.model.body[1].running_mean, clf.model.body[1].running_mean)
    assert sorted(p.read_bytes() for p in trained.rglob("*.safetensors")) == before  # the source is unchanged
    # refusals: one sentence, non-zero exit, nothing written
    few = sorted(folder.rglob("*.png"))[: MIN_FRAMES - 1]
    r = runner.invoke(app, ["classify", "adapt", str(trained), *map(str, few), "-o", str(tmp_path / "few"),
                            "--no-crop"])
    assert r.exit_code != 0 and "at least 8" in str(r.exception) and not (tmp_path / "few").exists()
    r = runner.invoke(app, ["classify", "adapt", str(trained), str(folder), "-o", str(trained), "--no-crop"])
    assert r.exit_code != 0 and "overwrite" in str(r.exception)


def test_spain_africa_adapted_variant_uses_only_adaptation_frames(trained, prepared, tmp_path):
    trained = trained[1]
    from sonoshift.judges.plane.cross_domain import spain_to_africa

    target = make_prepared(tmp_path / "target", seed=1)
    rule = {"A": {"adaptation": ["A00", "A01"], "test": ["A02", "A03"]},
            "B": {"adaptation": ["B00"], "test": ["B09"]}, "seed": 0}
    table = spain_to_africa(prepared, target, tmp_path / "x", classifier=trained, african=rule)
    assert list(table["variant"].unique()) == ["raw", "adapted", "zoomed", "adapted_zoomed"]
    adapted = load_classifier(tmp_path / "x" / "classifier_adapted")
    assert adapted.info["adapted"]["frames"] == 3 * 3  # three adaptation patients, one frame per class
    # the same statistics as adapting by hand on exactly those patients' frames
    every = load_samples(target, ["train", "val", "test"], 32)
    mine = adapt_classifier(load_classifier(trained),
                            every.frames[[p in ("A00", "A01", "B00") for p in every.patients]], "by hand")
    torch.testing.assert_close(adapted.model.body[1].running_mean, mine.model.body[1].running_mean)
    pred = pd.read_csv(tmp_path / "x" / "adapted" / "predictions.csv", dtype={"patient_id": str})
    assert sorted(pred["patient_id"].unique()) == ["A02", "A03", "B09"]


def test_predict_with_adapt_equals_adapting_then_predicting(trained, prepared, tmp_path):
    trained = trained[1]
    from sonoshift.judges.plane.adapt import adapt_files
    from sonoshift.judges.plane.api import predict_files

    folder = prepared / "frames" / "B"
    files = sorted(folder.rglob("*.png"))
    adapt_files(trained, [folder], tmp_path / "ad", crop=False)
    by_hand = predict_files(tmp_path / "ad", files, tmp_path / "a.csv", crop=False)
    at_once = predict_files(trained, files, tmp_path / "b.csv", crop=False, adapt=True)
    plain = predict_files(trained, files, tmp_path / "c.csv", crop=False)
    cols = [c for c in by_hand.columns if c.startswith("p_")]
    np.testing.assert_allclose(at_once[cols].to_numpy(), by_hand[cols].to_numpy(), atol=1e-6)
    assert np.abs(plain[cols].to_numpy() - at_once[cols].to_numpy()).max() > 1e-3


def test_demo_reference_scores_the_source_test_frames_raw_and_adapted(trained, prepared, tmp_path):
    from sonoshift.judges.plane.api import evaluate_on_dataset
    from sonoshift.pipeline.judges import adapted_reference, adapted_section

    clf, out = trained
    ref = adapted_reference(out, prepared, "B")
    b_train = load_samples(prepared, ["train"], 32, domains=["B"])
    assert ref["adapted_on_frames"] == len(b_train) and ref["test_frames"] == 2 * 3  # 2 test patients x 3 classes
    summary = evaluate_on_dataset(out, prepared, tmp_path / "ev")  # the independent per-domain evaluation
    b = summary[summary["domain"] == "B"].iloc[0]
    assert ref["raw"]["plane_accuracy"] == pytest.approx(b["accuracy"])
    assert ref["raw"]["plane_macro_f1"] == pytest.approx(b["macro_f1"])
    mine = adapt_classifier(clf, b_train.frames, "by hand")
    test_b = load_samples(prepared, ["test"], 32, domains=["B"])
    pred = mine.model(torch.from_numpy(test_b.frames).float().div(127.5).sub(1).unsqueeze(1)).argmax(1).numpy()
    truth = np.array([clf.classes.index(l) for l in test_b.labels])
    assert ref["adapted"]["plane_accuracy"] == pytest.approx((pred == truth).mean())
    ens = zoom_classifier(clf, DEFAULT_ZOOMS, b_train.frames, "by hand")
    with torch.no_grad():
        zpred = ens.model(torch.from_numpy(test_b.frames).float().div(127.5).sub(1).unsqueeze(1)).argmax(1).numpy()
    assert ref["adapted_zoomed"]["plane_accuracy"] == pytest.approx((zpred == truth).mean())
    # the report section: a harmonizer is flagged against the re-normalized judge's macro-F1
    ref = {"adapted_on_frames": 9, "raw": {"plane_accuracy": 0.5, "plane_macro_f1": 0.4},
           "adapted": {"plane_accuracy": 0.8, "plane_macro_f1": 0.8}}
    judged = {"untranslated": {"harmonized": {"plane_accuracy": 0.5, "plane_macro_f1": 0.4}},
              "good": {"harmonized": {"plane_accuracy": 0.9, "plane_macro_f1": 0.85},
                       "ground_truth": {"plane_accuracy": 0.95, "plane_macro_f1": 0.9}},
              "bad": {"harmonized": {"plane_accuracy": 0.7, "plane_macro_f1": 0.6}}}
    t = adapted_section(judged, ref).table.set_index("input")["beats the re-normalized judge (macro-F1)"]
    assert t["harmonized by good"] == "yes" and t["harmonized by bad"] == "no"
    assert "harmonized by untranslated" not in t.index and t["ground truth (ceiling)"] == ""
    ref["adapted_zoomed"], ref["zooms"] = {"plane_accuracy": 0.88, "plane_macro_f1": 0.87}, [1.0, 1.25]
    t = adapted_section(judged, ref).table.set_index("input")
    assert t.loc["harmonized by good", "beats the zoom ensemble (macro-F1)"] == "no"
    assert "source frames, judge as a zoom ensemble (1, 1.25) re-normalized at each zoom" in t.index
