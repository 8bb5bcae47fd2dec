"""DiFUSAL's pure parts against hand computations: weakness, allocation with floors, selection rules, GA band."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sonoshift.biometry.intergrowth import hc_centile
from sonoshift.difusal.allocation import allocate, uniform
from sonoshift.difusal.critics import ga_band, knn_distance
from sonoshift.difusal.rounds import conditions_for
from sonoshift.difusal.selection import select
from sonoshift.difusal.weakness import bin_index, condition_weakness, ga_weakness, plane_weakness
from sonoshift.errors import SonoshiftError


def test_plane_weakness_from_a_known_confusion_and_entropy():
    probs = np.array([[1.0, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0, 0, 1.0]])
    y = np.array([0, 0, 1, 2])
    err, ent = plane_weakness(probs, y, 3)
    # class 1's only frame is predicted 0 (argmax of a tie picks the first); the others are right
    np.testing.assert_allclose(err, [0.0, 1.0, 0.0])
    # class 0: mean of entropy 0 and log 3 over log 3; class 1: log 2 / log 3
    np.testing.assert_allclose(ent, [0.5, math.log(2) / math.log(3), 0.0], atol=1e-9)


def test_plane_weakness_of_a_class_without_frames_is_the_maximum():
    err, ent = plane_weakness(np.array([[0.9, 0.1]]), np.array([0]), 2)
    assert err[1] == 1 and ent[1] == 1 and err[0] == 0


def test_ga_weakness_per_bin_over_bin_width():
    edges = (20.0, 24.0, 30.0)
    true = np.array([21.0, 23.0, 25.0, np.nan])
    pred = np.array([22.0, 23.0, 28.0, 30.0])
    # bin 0: |1|, |0| -> 0.5 weeks / width 4; bin 1: |3| / width 6; the NaN-GA frame is ignored
    np.testing.assert_allclose(ga_weakness(true, pred, edges), [0.125, 0.5])
    np.testing.assert_array_equal(bin_index(np.array([10.0, 20.0, 24.0, 29.9, 50.0]), edges), [0, 0, 1, 1, 1])


def test_condition_weakness_adds_the_ga_term_to_the_head_plane_only():
    w = condition_weakness(np.array([0.2, 0.5]), np.array([0.4, 0.1]), np.array([0.3, 0.0]), head=1,
                           entropy_weight=0.5)
    # plane 0: 0.2 + 0.5*0.4 = 0.4 in both bins; plane 1 (head): 0.5 + 0.05 = 0.55, + 0.3 in bin 0
    np.testing.assert_allclose(w, [[0.4, 0.4], [0.85, 0.55]])


def test_allocation_floor_then_proportional():
    # floor 1 each, 8 left split 1:3 -> 2 and 6
    np.testing.assert_array_equal(allocate(np.array([1.0, 3.0]), 10, 1), [3, 7])
    # 4 left over 3 equal conditions: 4/3 each, the remainder goes to the first
    np.testing.assert_array_equal(allocate(np.array([1.0, 1.0, 1.0]), 10, 2), [4, 3, 3])
    # zero weakness everywhere: the rest is spread evenly; a zero-weakness condition keeps its floor
    np.testing.assert_array_equal(allocate(np.zeros(4), 10, 1), [3, 3, 2, 2])
    np.testing.assert_array_equal(allocate(np.array([0.0, 2.0]), 6, 2), [2, 4])
    a = allocate(np.array([[0.1, 0.7], [0.0, 0.35]]), 17, 2)
    assert a.shape == (2, 2) and a.sum() == 17 and a.min() >= 2
    np.testing.assert_array_equal(uniform((2, 2), 10), [[3, 3], [2, 2]])


def test_allocation_refuses_a_budget_below_the_floors():
    with pytest.raises(SonoshiftError, match="cannot give 3"):
        allocate(np.ones(4), 10, 3)


def test_conditions_follow_the_allocation():
    p, g = conditions_for(np.array([[2, 0], [1, 3]]), (20.0, 25.0, 30.0), np.random.default_rng(0))
    np.testing.assert_array_equal(p, [0, 0, 1, 1, 1, 1])
    assert np.all((g[:3] >= 20) & (g[:3] < 25)) and np.all((g[3:] >= 25) & (g[3:] < 30))


def _scores(**cols):
    base = {"near_copy": False, "realism_ok": True, "critic_plane_ok": True, "ga_ok": True, "down_conf": 0.5,
            "down_ga_err": np.nan}
    return {**base, **cols}


def test_selection_reasons_in_order():
    rows = pd.DataFrame([
        _scores(),                                              # hard and valid
        _scores(near_copy=True, critic_plane_ok=False),         # the first failing check wins
        _scores(realism_ok=False),
        _scores(critic_plane_ok=False),
        _scores(ga_ok=False, down_conf=0.99),
        _scores(down_conf=0.95),                                # the current model already knows it
        _scores(down_conf=0.95, down_ga_err=-2.0),              # easy plane, but its GA is missed: hard
        _scores(down_conf=0.95, down_ga_err=1.0),               # GA within the tolerance: easy
    ])
    out = select(rows, easy_conf=0.9, ga_hard_weeks=1.5)
    assert list(out["reason"]) == ["accepted", "near_copy", "unrealistic", "wrong_plane", "ga_inconsistent",
                                   "too_easy", "accepted", "too_easy"]
    assert list(out["accepted"]) == [True, False, False, False, False, False, True, False]


def test_ga_band_brackets_the_conditioned_ga_and_widens_with_it():
    lo, hi = ga_band(np.array([20.0, 34.0]), (2.5, 97.5))
    assert np.all(lo < np.array([20.0, 34.0])) and np.all(hi > np.array([20.0, 34.0]))
    assert (hi - lo)[1] > (hi - lo)[0]  # HC spread grows with GA
    # the low end is the GA of the 2.5th-centile head: smaller head -> younger
    assert hc_centile(20.0, 2.5) < hc_centile(20.0, 50.0)


def test_knn_distance_by_hand():
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    import torch

    d = knn_distance(torch.tensor([[0.0, 0.0]]), torch.tensor(ref, dtype=torch.float32), k=2)
    np.testing.assert_allclose(d, [0.5])  # nearest two: 0 and 1
    d = knn_distance(torch.tensor(ref, dtype=torch.float32), torch.tensor(ref, dtype=torch.float32), k=1,
                     exclude_self=True)
    np.testing.assert_allclose(d, [1.0, 1.0, 2.0])


def test_histogram_realism_by_hand():
    import torch

    from sonoshift.difusal.critics import hist_bc

    ref = torch.tensor([2.0, 2.0, 0.0, 0.0])  # half the pixels in bin 0, half in bin 1
    same = torch.tensor([[[[-1.0, -0.6], [-1.0, -0.6]]]])     # [0, 0.2] -> bins 0 and 0: all in bin 0
    x = torch.cat([same, torch.full((1, 1, 2, 2), 1.0)])   # second image: all pixels in the last bin
    # all mass in bin 0 against p = (0.5, 0.5, 0, 0): sqrt(1 * 0.5); no overlap: 0
    np.testing.assert_allclose(hist_bc(x, ref), [math.sqrt(0.5), 0.0], atol=1e-9)


def _frames(n_patients: int, per: int, size: int = 32, seed: int = 0):
    """Frames of smooth random blobs, ``per`` per patient, two videos per patient."""
    import torch

    from sonoshift.difusal.data import Frames

    g = torch.Generator().manual_seed(seed)
    n = n_patients * per
    x = torch.nn.functional.interpolate(torch.rand((n, 1, 8, 8), generator=g), size=(size, size), mode="bilinear")
    x = (x * 2 - 1).clamp(-1, 1)
    pats = np.repeat([f"P{i}" for i in range(n_patients)], per)
    vids = np.array([f"{p}/v{j % 2}" for j, p in enumerate(pats)])
    return Frames(x, np.zeros(n, np.int64), np.full(n, 25.0), pats, vids)


def test_the_loop_guard_flags_planted_copies_and_not_new_images():
    import torch

    from sonoshift.difusal.config import Critics as CriticCfg
    from sonoshift.difusal.critics import copy_guard
    from sonoshift.synth.evaluation.memorization import perturb

    train, fresh = _frames(4, 10), _frames(4, 10, seed=1)
    guard = copy_guard(train, CriticCfg())
    copies = perturb(train.x, torch.Generator().manual_seed(2))  # 1% noise + up to 1 px shift
    d, idx = guard.nearest(copies)
    assert (d < guard.threshold).all() and (idx.numpy() == np.arange(len(train))).all()
    assert (guard.nearest(fresh.x)[0] >= guard.threshold).float().mean() > 0.9


def test_the_loop_guard_calibrates_on_videos_when_a_regime_holds_one_patient():
    from sonoshift.difusal.config import Critics as CriticCfg
    from sonoshift.difusal.critics import copy_guard

    one = _frames(1, 12)
    guard = copy_guard(one, CriticCfg())
    assert guard.calibration["n_images"] == 12  # every frame has a frame of the other video to compare with
    with pytest.raises(ValueError):
        copy_guard(one.take(np.arange(0, 12, 2)), CriticCfg())  # one patient, one video: nothing to calibrate on


def test_cluster_bootstrap_resamples_whole_patients_and_brackets_the_point_value():
    from sonoshift.difusal.intervals import bootstrap, interval, measures, resamples

    pats = np.array(["a"] * 3 + ["b"] * 2 + ["c"] * 5)
    sets = resamples(pats, 200, seed=0)
    for s in sets:
        drawn = pats[s]
        # every drawn patient comes with all of its frames (a multiple of its frame count)
        for p, n in (("a", 3), ("b", 2), ("c", 5)):
            assert (drawn == p).sum() % n == 0
        assert len(np.unique(drawn)) >= 1
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0, 1, 1])
    pred = np.array([0, 1, 1, 1, 0, 0, 1, 0, 1, 0])
    ga = np.array([20.0, 20, 20, 30, 30, np.nan, 25, 25, 25, 25])
    est = np.array([21.0, 22, 20, 29, 33, np.nan, 25, 25, 27, 26])
    p = {"y": y, "pred": pred, "ga": ga, "ga_est": est}
    f1, mae = measures(p, np.arange(10), 2)
    # hand: class 0 TP 3 FP 2 FN 1 -> F1 6/9; class 1 TP 4 FP 1 FN 2 -> 8/11; GA errors (weeks)
    assert f1 == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert mae == pytest.approx(np.mean([1, 2, 0, 1, 3, 0, 0, 2, 1]) * 7)
    lo, hi = interval(bootstrap(p, sets, 2)[:, 0])
    assert lo <= f1 <= hi and lo < hi


def test_selection_per_plane_cap_keeps_the_hardest():
    rows = pd.DataFrame([_scores(down_conf=c) for c in (0.5, 0.2, 0.8, 0.3, 0.1)] + [_scores(realism_ok=False)])
    planes = np.array([0, 0, 0, 0, 1, 0])
    out = select(rows, easy_conf=0.9, ga_hard_weeks=1.5, plane_ids=planes, per_plane_cap=2)
    # plane 0 has 4 valid-and-hard rows: the two least confident (0.2, 0.3) stay; plane 1's only row stays;
    # a row rejected for another reason keeps that reason
    assert list(out["reason"]) == ["over_quota", "accepted", "over_quota", "accepted", "accepted", "unrealistic"]
    assert list(select(rows, 0.9, 1.5, planes, 0)["reason"]).count("accepted") == 5  # 0 = no cap


def test_fan_mask_blackens_outside_the_matching_fan():
    import torch

    from sonoshift.difusal.data import Frames
    from sonoshift.difusal.fan import apply_fan, fan_masks

    s = 8
    left = torch.zeros(s, s, dtype=torch.bool)
    left[:, :4] = True
    top = torch.zeros(s, s, dtype=torch.bool)
    top[:3] = True
    # two videos: frames bright inside their fan, black outside (one frame of each video has a dark hole)
    frames = [torch.where(m, torch.tensor(0.5), torch.tensor(-1.0)) for m in (left, left, left, top, top, top)]
    frames[0] = frames[0].clone()
    frames[0][0, 0] = -1.0
    f = Frames(torch.stack(frames).unsqueeze(1), np.zeros(6, np.int64), np.full(6, np.nan), np.array(["p"] * 6),
               np.array(["a"] * 3 + ["b"] * 3))
    masks = fan_masks(f)
    assert masks.shape == (2, s, s)
    assert torch.equal(masks[0], left) and torch.equal(masks[1], top)  # a hole in one of three frames stays on
    # a sample: bright top rows, faint speckle everywhere else -> the top fan is chosen, the rest set to -1
    g = torch.Generator().manual_seed(0)
    x = -0.9 + 0.05 * torch.rand(1, 1, s, s, generator=g)
    x[0, 0, :3] = 0.6
    y = apply_fan(x, masks)
    assert torch.equal(y[0, 0, :3], x[0, 0, :3]) and bool((y[0, 0, 3:] == -1).all())
    assert apply_fan(x[:0], masks).shape == (0, 1, s, s)


def test_measures_average_over_training_seeds():
    from sonoshift.difusal.intervals import measures

    y = np.array([0, 0, 1, 1])
    pred = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])  # seed 0 perfect; seed 1 calls everything class 1
    ga = np.array([20.0, 30.0, np.nan, np.nan])
    est = np.array([[21.0, 30.0, np.nan, np.nan], [20.0, 33.0, np.nan, np.nan]])
    f1, mae = measures({"y": y, "pred": pred, "ga": ga, "ga_est": est}, np.arange(4), 2)
    # seed 1: class 0 F1 0, class 1 TP 2 FP 2 -> 2/3; mean with seed 0's 1.0; GA: (0.5 + 1.5) / 2 weeks
    assert f1 == pytest.approx((1.0 + (0 + 2 / 3) / 2) / 2)
    assert mae == pytest.approx(1.0 * 7)


def test_background_plane_gets_no_candidates():
    from sonoshift.config import load_config
    from sonoshift.difusal.arms import ARMS
    from sonoshift.difusal.config import DifusalConfig
    from sonoshift.difusal.rounds import allocation_for, check_config

    cfg = load_config(DifusalConfig, None, ["data.background_plane=other", "loop.budget=30", "loop.floor=1"])
    w = np.arange(12, dtype=float).reshape(4, 3)
    for arm in ("difusal", "uniform"):
        a = allocation_for(cfg, ARMS[arm], w)
        assert a[3].sum() == 0 and a.sum() == 30 and a[:3].min() >= 1
    np.testing.assert_array_equal(allocation_for(cfg, ARMS["uniform"], w)[:3], np.full((3, 3), 30 // 9) +
                                  (np.arange(9).reshape(3, 3) < 30 % 9))
    with pytest.raises(SonoshiftError, match="background_plane"):
        check_config(load_config(DifusalConfig, None, ["data.background_plane=head"]))


def test_downstream_lr_follows_the_declared_schedule():
    import torch

    from sonoshift.difusal.config import Downstream
    from sonoshift.difusal.downstream import _set_lr

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    cos, const = Downstream(lr=3e-3), Downstream(lr=3e-3, lr_schedule="constant")
    assert cos.lr_schedule == "cosine"  # the default since session 12
    for step in (0, 37, 75, 149):
        _set_lr(opt, cos, step, 150)
        assert opt.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * step / 150)))
        _set_lr(opt, const, step, 150)
        assert opt.param_groups[0]["lr"] == 3e-3
    _set_lr(opt, cos, 75, 150)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.5e-3)


def test_image_guided_candidates_start_from_distinct_unlabelled_images():
    from sonoshift.config import load_config
    from sonoshift.difusal.config import DifusalConfig
    import torch

    from sonoshift.difusal.rounds import Regime, check_config, init_images

    un = _frames(4, 5, size=8)  # 20 unlabelled images
    none = _frames(1, 1, size=8).take(np.zeros(0, np.int64))
    reg = Regime("r", 0.1, none, none, none, un)
    off = load_config(DifusalConfig, None, ["generator.unlabelled=20"])
    six = np.zeros(6, np.int64)
    assert init_images(off, reg, six, 0)[0] is None and (init_images(off, reg, six, 0)[1] == -1).all()
    on = load_config(DifusalConfig, None, ["generator.unlabelled=20", "loop.init_strength=0.5"])
    x, idx = init_images(on, reg, six, 0)
    assert len(set(idx.tolist())) == 6 and idx.max() < 20  # without replacement while the pool lasts
    torch.testing.assert_close(x, un.x[torch.from_numpy(idx)])
    np.testing.assert_array_equal(init_images(on, reg, six, 0)[1], idx)  # seeded
    assert len(init_images(on, reg, np.zeros(30, np.int64), 1)[1]) == 30  # a pool smaller than the candidates: drawn with replacement
    with pytest.raises(SonoshiftError, match="has none"):
        init_images(on, Regime("r", 0.1, none, none, none, none), six, 0)
    with pytest.raises(SonoshiftError, match="init_strength"):
        check_config(load_config(DifusalConfig, None, ["generator.unlabelled=0", "loop.init_strength=0.5"]))


def test_matched_starts_come_from_images_the_critic_gives_the_candidates_plane():
    from sonoshift.difusal.init_images import draw_starts

    pool = _frames(3, 4, size=8)  # 12 images
    probs = np.zeros((12, 3))
    probs[:5, 0], probs[5:, 1] = 1.0, 1.0  # the critic calls images 0-4 plane 0, 5-11 plane 1, none plane 2
    planes = np.array([0, 1, 0, 2, 1, 0, 0])
    _, idx = draw_starts(pool, planes, 3, probs)
    assert (idx[planes == 0] < 5).all() and len(set(idx[planes == 0].tolist())) == 4  # distinct while they last
    assert (idx[planes == 1] >= 5).all()
    assert 0 <= idx[planes == 2][0] < 12  # no pool image for plane 2: any image
    _, many = draw_starts(pool, np.zeros(9, np.int64), 0, probs)  # 9 candidates, 5 matching images
    assert (many < 5).all() and len(set(many.tolist())) == 5


def test_self_training_adds_the_unlabelled_images_the_critic_is_sure_of_under_its_labels(monkeypatch):
    import torch

    import sonoshift.difusal.critics as critics_mod
    from sonoshift.difusal.config import Downstream
    from sonoshift.difusal.data import Frames

    class Fixed(torch.nn.Module):
        """Logits read from the image's first pixel: class = round(pixel * 10) % 3, confidence from its sign."""

        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # so the predictor finds a device

        def forward(self, x):
            v = x[:, 0, 0, 0]
            k = (v.abs() * 10).round().long() % 3
            out = torch.zeros(len(x), 3)
            out[torch.arange(len(x)), k] = torch.where(v > 0, 10.0, 0.5)
            return out

    # unlabelled images 0-3: first pixel +0.1 (class 1, sure), -0.2 (class 2, unsure), +0.2 (class 2, sure),
    # -0.1 (class 1, unsure)
    xs = torch.zeros(4, 1, 4, 4)
    xs[:, 0, 0, 0] = torch.tensor([0.1, -0.2, 0.2, -0.1])
    unlabelled = Frames(xs, np.full(4, -1), np.full(4, np.nan), np.array(["u"] * 4, dtype=object))
    train = Frames(torch.zeros(2, 1, 4, 4), np.array([0, 1]), np.array([20.0, np.nan]),
                   np.array(["p", "p"], dtype=object))
    seen = {}

    def fake_train_plane(f, n, d, seed, **kw):
        seen["frames"], seen["seed"] = f, seed
        return "refitted"

    monkeypatch.setattr(critics_mod, "train_plane", fake_train_plane)
    p = torch.softmax(Fixed()(xs), 1).max(1).values.numpy()
    assert (p[[0, 2]] > 0.99).all() and (p[[1, 3]] < 0.5).all()
    out = critics_mod.self_trained(Fixed(), train, unlabelled, 3, Downstream(), 7, 0.9)
    f = seen["frames"]
    assert out == "refitted" and seen["seed"] == 7 and len(f) == 4
    np.testing.assert_array_equal(f.y, [0, 1, 1, 2])  # the two labelled frames, then images 0 and 2 under the critic
    torch.testing.assert_close(f.x[2:], xs[[0, 2]])
    assert np.isnan(f.ga[2:]).all()
    # nothing the critic is sure of: the first fit is kept
    fixed = Fixed()
    assert critics_mod.self_trained(fixed, train, unlabelled.take(np.array([1, 3])), 3, Downstream(), 7, 0.9) is fixed
