"""Synthesis evaluation: metric functions against hand-computed cases, and evaluate-synth end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from fake_runs import write_lpips_weights
from synth_data import make_prepared
from sonoshift.config import load_config
from sonoshift.synth import load_synthesizer
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.evaluation.evaluate import EvalSynthConfig, evaluate_synth, load_images
from sonoshift.synth.evaluation.fidelity import ga_agreement, macro_f1, plane_predictions
from sonoshift.judges.plane.checkpoint import PlaneClassifier, load_classifier
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.synth.evaluation.judges import ProjectJudges, load_judges
from sonoshift.synth.evaluation.memorization import (CopyGuard, calibrate_threshold, exact_cdist, nearest, normalise,
                                                     shift)
from sonoshift.synth.evaluation.perceptual import us_perceptual
from sonoshift.synth.evaluation.realism import alexnet_features, fid_kid_bootstrap
from sonoshift.metrics.lpips import load_lpips
from sonoshift.synth.train import train_synth
from sonoshift.synth.write import SynthesisRequest, synthesize


def test_macro_f1_hand_case() -> None:
    true = np.array(["a", "a", "a", "b", "b", "c"])
    pred = np.array(["a", "a", "b", "b", "c", "c"])
    # a: TP2 FP0 FN1 -> 4/5; b: TP1 FP1 FN1 -> 2/4; c: TP1 FP1 FN0 -> 2/3.
    assert macro_f1(true, pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert macro_f1(true, true) == 1.0


def test_ga_agreement_against_shuffled_baseline() -> None:
    cond = np.linspace(20, 36, 40)
    perfect = ga_agreement(cond.copy(), cond, seed=0)
    assert perfect["mae"] == 0 and perfect["spearman"] == pytest.approx(1.0)
    assert perfect["mae_shuffled"] > 4.0 and abs(perfect["spearman_shuffled"]) < 0.1
    noisy = cond + np.random.default_rng(0).normal(0, 1, 40)
    r = ga_agreement(noisy, cond, seed=0)
    assert r["mae"] == pytest.approx(np.mean(np.abs(noisy - cond)))
    assert r["spearman"] == pytest.approx(spearmanr(noisy, cond).statistic)


def test_threshold_calibration_hand_case() -> None:
    # Unit vectors at angles (deg) on a circle; chord distance 2 sin(delta / 2).
    ang = np.radians([0, 1, 10, 30, 30, 90])
    f = torch.tensor(np.stack([np.cos(ang), np.sin(ang)], 1), dtype=torch.float32)
    patients = ["p", "p", "q", "r", "s", "t"]   # 0 and 1: same patient (neighbouring frames); 3, 4: duplicates
    cal = calibrate_threshold(normalise(f), patients, percentile=0.0)
    chord = lambda deg: 2 * math.sin(math.radians(deg) / 2)  # noqa: E731
    # NN over other patients, duplicates removed: 0->10 (10 deg), 1->10 (9), 10->1 (9), 30->10 (20) twice, 90->30 (60)
    assert cal["n_duplicate_pairs_removed"] == 1
    assert cal["threshold"] == pytest.approx(chord(9), rel=1e-4)
    assert cal["median_nn"] == pytest.approx(chord(10), rel=1e-4)   # torch median: lower of the two middle values
    d, idx = nearest(normalise(f[:2]), normalise(f[2:]))
    assert idx.tolist() == [0, 0] and d[0] == pytest.approx(chord(10), rel=1e-4)


def test_fid_kid_bootstrap_separates_shifted_sets() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    same = fid_kid_bootstrap(a, b, n_boot=50)
    far = fid_kid_bootstrap(a, b + 1.0, n_boot=50)
    # FID of N(0, I) vs N(1, I) in 4 dims is |mu|^2 = 4.
    assert far["fid"] == pytest.approx(4.0, abs=0.8) and far["fid_lo"] <= far["fid"] <= far["fid_hi"]
    assert same["fid_hi"] < far["fid_lo"] and same["kid_hi"] < far["kid_lo"]


def test_us_perceptual_identity_and_symmetry() -> None:
    torch.manual_seed(0)
    net = PlaneNet(2, NetConfig(stem=4, widths=(8, 8))).eval()
    judges = ProjectJudges(PlaneClassifier(model=net, classes=("a", "b"), image_size=16))
    x, y = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.allclose(us_perceptual(judges, x, x), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    torch.testing.assert_close(us_perceptual(judges, x, y), us_perceptual(judges, y, x))
    assert (us_perceptual(judges, x, y) > 0).all()


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 12 images in 256-D: the reference sqrtm warns
def test_evaluate_synth_end_to_end(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "d", patients=8)
    cfg = load_config(SynthConfig, None, [
        "data.size=16", "model.block_out_channels=[8,16]", "model.attention=[false,true]",
        "model.attention_head_dim=8", "model.norm_num_groups=4", "train.batch_size=4", "train.device=cpu",
        "train.max_steps=2", "train.tensorboard=false", "train.image_every=0", "diffusion.steps=2"])
    train_synth([data], cfg, tmp_path / "run", progress=False)
    syn = synthesize(load_synthesizer(tmp_path / "run"), tmp_path / "syn",
                     SynthesisRequest(plane="all", ga="20:34", n=12, contact_sheet=False), progress=False)
    ecfg = EvalSynthConfig(size=16, judge_steps=30, ga_steps=10, cas_steps=10, n_boot=5, planted=20)
    res = evaluate_synth(syn, tmp_path / "eval", cfg=ecfg, progress=False)
    out = tmp_path / "eval"
    for name in ("metrics.json", "metrics.csv", "summary.md", "nearest_copies.png", "judges/plane/classifier.json",
                 "judges/ga/regressor.json"):
        assert (out / name).is_file(), name
    assert res["n_synthetic"] == 12 and res["real"] == [str(data.resolve())]
    m = res["memorization"]
    assert 0 <= m["near_copy_rate"] <= 1 and m["threshold"] > 0 and m["n_planted"] == 20
    assert m["planted_flagged"] >= 0.95   # speckle frames of other patients are far; 1-px shifted copies are not
    f = res["fidelity"]
    assert 0 <= f["plane_macro_f1_synthetic"] <= 1 and f["ga_synthetic_heads"]["n"] == 6
    assert "lpips_alex" in res["perceptual"]  # no ImageNet weights here: says why instead of a number
    # The saved judges reproduce the reported held-out plane score (save -> load equality).
    j = load_judges(out / "judges")
    held = load_images([str(data)], ["test"], 16)
    pred = plane_predictions(j, held.x)
    assert macro_f1(held.plane, pred) == pytest.approx(f["judge_macro_f1_real_heldout (baseline)"])
    assert j.ga is not None and load_classifier(out / "judges" / "plane").classes == ("abdomen", "brain")
    assert json.loads((out / "metrics.json").read_text())["n_real_train"] == res["n_real_train"]
    assert res["realism_alexnet"].startswith("not computed")

    # With (test-made) AlexNet + LPIPS weights: FID / KID in ImageNet AlexNet features are added; nothing else moves.
    state = write_lpips_weights(tmp_path / "w", "alex")
    res2 = evaluate_synth(syn, tmp_path / "eval2", judges_dir=str(out / "judges"), progress=False,
                          cfg=EvalSynthConfig(size=16, cas_steps=10, n_boot=5, planted=20,
                                              lpips_weights=str(tmp_path / "w")))
    assert res2["realism"] == res["realism"] and res2["memorization"] == res["memorization"]
    alex = res2["realism_alexnet"]["synthetic_vs_heldout"]
    syn_x = load_images([str(syn)], ["train"], 16).x
    ref = _fid_numpy(_alexnet_reference(state, syn_x), _alexnet_reference(state, held.x))
    assert alex["fid"] == pytest.approx(ref, rel=1e-4, abs=1e-6) and alex["n_a"] == 12
    assert "lpips_alex_nearest_train" in res2["perceptual"]
    assert "ImageNet AlexNet" in (tmp_path / "eval2" / "summary.md").read_text()


def _alexnet_reference(state: dict, x: torch.Tensor) -> np.ndarray:
    """torchvision AlexNet's conv part written out with F.conv2d from the saved weights: grey [-1, 1] -> RGB in
    LPIPS's ImageNet space at 224 px, relu5 averaged over space."""
    import torch.nn.functional as F

    x = F.interpolate((x.float().clamp(-1, 1) + 1) / 2, size=(224, 224), mode="bilinear", align_corners=False)
    x = x.repeat(1, 3, 1, 1) * 2 - 1
    shift_, scale = torch.tensor([-0.030, -0.088, -0.188]), torch.tensor([0.458, 0.448, 0.450])
    x = (x - shift_.view(1, 3, 1, 1)) / scale.view(1, 3, 1, 1)
    w = lambda i: (state[f"features.{i}.weight"], state[f"features.{i}.bias"])  # noqa: E731
    x = F.max_pool2d(F.relu(F.conv2d(x, *w(0), stride=4, padding=2)), 3, 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, *w(3), padding=2)), 3, 2)
    x = F.relu(F.conv2d(x, *w(6), padding=1))
    x = F.relu(F.conv2d(x, *w(8), padding=1))
    x = F.relu(F.conv2d(x, *w(10), padding=1))
    return x.mean(dim=(2, 3)).double().numpy()


def _fid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.linalg import sqrtm

    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)  # population, as FID
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * np.real(sqrtm(ca @ cb))))


def test_alexnet_features_match_the_written_out_network(tmp_path: Path) -> None:
    state = write_lpips_weights(tmp_path, "alex", seed=3)
    x = torch.rand(5, 1, 40, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got = alexnet_features(load_lpips("alex", tmp_path), x, batch=2)
    assert got.shape == (5, 256)
    np.testing.assert_allclose(got.double().numpy(), _alexnet_reference(state, x), rtol=1e-4, atol=1e-5)


def _blob_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """n images (n, 1, size, size) in [-1, 1]: a random smooth pattern inside a black 3-px border."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 1, 8, 8, generator=g), size=(size, size), mode="bilinear")
    x = x * 2 - 1
    x[..., :3, :] = x[..., -3:, :] = x[..., :, :3] = x[..., :, -3:] = -1
    return x


def test_copy_guard_without_shifts_matches_numpy_reference() -> None:
    x = _blob_images(6, 0)
    patients = ["a", "a", "b", "b", "c", "c"]
    guard = CopyGuard(x, patients, size=16, max_shift=0, percentile=50.0)
    f = torch.nn.functional.avg_pool2d(x, 2).flatten(1).numpy().astype(np.float64)   # 32 -> 16 px "area"
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    d = np.linalg.norm(f[:, None] - f[None], axis=2)
    same = np.equal.outer(np.array(patients), np.array(patients))
    nn = np.where(same, np.inf, d).min(1)
    assert guard.threshold == pytest.approx(np.percentile(nn, 50.0), rel=1e-5)
    dq, iq = guard.nearest(x[[3]])
    assert iq.tolist() == [3] and float(dq[0]) < 1e-5


def test_copy_guard_finds_shifted_copies_and_flags_them() -> None:
    x = _blob_images(40, 1)
    patients = [f"p{i // 2}" for i in range(40)]
    guard = CopyGuard(x, patients, size=32, max_shift=1, percentile=1.0)
    copies = torch.stack([shift(x[i], dy, dx) for i, (dy, dx) in zip(range(0, 40, 4), [(1, 0), (0, -1), (1, 1),
                          (-1, -1), (0, 0), (-1, 1), (1, -1), (0, 1), (-1, 0), (1, 0)])])
    d, idx = guard.nearest(copies)
    assert idx.tolist() == list(range(0, 40, 4))   # each copy finds its own source despite the shift
    assert (d < 1e-5).all() and (d < guard.threshold).all()
    # Without shift tolerance a shifted copy is not at distance 0.
    d0, _ = CopyGuard(x, patients, size=32, max_shift=0).nearest(copies[:1])
    assert float(d0[0]) > 1e-3


def test_shift_moves_pixels_and_fills_black() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3)
    y = shift(x, 1, -1)
    assert y[0, 0].tolist() == [[-1, -1, -1], [1, 2, -1], [4, 5, -1]]


def test_project_judges_learn_plane_and_ga_from_real_frames(tmp_path: Path) -> None:
    """The issue-14 plane classifier and GA regressor, trained by train_judges on toy frames (a disc for heads
    whose radius grows with GA, a bar for abdomens), classify held-out patients and rank their GA."""
    from sonoshift.synth.evaluation.judges import train_judges

    data = make_prepared(tmp_path / "d", patients=10, size=32)
    tr, te = load_images([str(data)], ["train"], 32), load_images([str(data)], ["test", "val"], 32)
    planes = ("abdomen", "brain")
    enc = lambda s: torch.tensor([planes.index(p) for p in s.plane])  # noqa: E731
    j = train_judges(tr.x, enc(tr), torch.tensor(tr.ga, dtype=torch.float32), planes, plane_steps=60,
                     ga_steps=150, progress=False)
    assert macro_f1(te.plane, plane_predictions(j, te.x)) == 1.0
    heads = te.plane == "brain"
    ga = j.ga_weeks(te.x[torch.from_numpy(heads)]).numpy()
    assert spearmanr(ga, te.ga[heads]).statistic > 0.8
    j.save(tmp_path / "j")
    back = load_judges(tmp_path / "j")
    torch.testing.assert_close(back.plane_logits(te.x), j.plane_logits(te.x))
    torch.testing.assert_close(back.ga_weeks(te.x), j.ga_weeks(te.x))


def test_train_judges_applies_plane_recipe_overrides(tmp_path: Path) -> None:
    """``plane_overrides`` reach the classifier recipe: a stem of 8 channels gives a first conv with 8 filters
    (the recipe's own stem is 16), and patience 1 with evaluations every 5 steps stops before the step budget
    once the validation macro-F1 stops rising (or runs it out, never past it)."""
    from sonoshift.synth.evaluation.judges import train_judges

    data = make_prepared(tmp_path / "d", patients=6, size=32)
    tr, va = load_images([str(data)], ["train"], 32), load_images([str(data)], ["test", "val"], 32)
    planes = ("abdomen", "brain")
    enc = lambda s: torch.tensor([planes.index(p) for p in s.plane])  # noqa: E731
    j = train_judges(tr.x, enc(tr), torch.full((len(tr.x),), math.nan), planes, val_images=va.x,
                     val_plane=enc(va), plane_steps=40, progress=False,
                     plane_overrides=("net.stem=8", "train.eval_every=5", "train.patience=1"))
    first = next(m for m in j.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == 8
    info = j.clf.info
    assert [h["step"] for h in info["history"]] == list(range(5, info["steps_run"] + 1, 5))
    f1 = [h["val_macro_f1"] for h in info["history"]]
    assert info["steps_run"] == 40 or (len(f1) >= 2 and f1[-1] <= max(f1[:-1]))


def test_exact_cdist_reads_copies_as_zero_and_matches_float64_numpy() -> None:
    g = torch.Generator().manual_seed(3)
    a = normalise(torch.rand(50, 1024, generator=g) * 100)  # unit rows with large raw values: float32 cancellation
    b = torch.cat([a[:10], normalise(torch.rand(30, 1024, generator=g))])
    d = exact_cdist(a, b)
    ref = np.sqrt(((a.double().numpy()[:, None, :] - b.double().numpy()[None, :, :]) ** 2).sum(-1))
    assert d.dtype == torch.float32
    np.testing.assert_allclose(d.numpy(), ref, atol=1e-6)
    assert (d.diagonal()[:10] < 1e-6).all()  # a copy is a duplicate (dup_eps 1e-6), on every CPU
