"""DiFUSAL's real-data inputs (difusal/real_data.py): the external test set under the African rule, unlabelled
images of another domain with their own generator token, harmonized test frames, and the accuracy headline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sonoshift.config import load_config
from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.difusal.config import DifusalConfig, LoopData
from sonoshift.difusal.data import Frames
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.african import SPLIT_FILE
from synth_data import _frames, make_prepared

RULE = json.loads(SPLIT_FILE.read_text())  # the written African rule, read independently of african.py
TEST_IDS = RULE["Algeria"]["test"][:3] + RULE["Ghana"]["test"][:2]
ADAPT_IDS = RULE["Algeria"]["adaptation"][:2] + RULE["Ghana"]["adaptation"][:2]


def _african_toy(root: Path, size: int = 16, ids: list[str] | None = None, domain: str = "", labels: bool = True,
                 extra: list[dict] | None = None) -> Path:
    """A prepared "African" set: one head (disc) and one abdomen (bar) image per patient of ``ids`` (default:
    patient ids of both parts of the African rule), centres as domains (or ``domain``), plane labels when
    ``labels``; ``extra``: more spec items (e.g. Spanish frames)."""
    root.mkdir(parents=True, exist_ok=True)
    items = list(extra or [])
    for i, pid in enumerate(TEST_IDS + ADAPT_IDS if ids is None else ids):
        for kind, plane in enumerate(("head", "abdomen")):
            stem = f"{pid}_{plane}"
            np.save(root / f"{stem}.npy", _frames(1, kind, 24.0, seed=7 * i + kind))
            items.append({"path": f"{stem}.npy", "domain": domain or pid.split("-")[0], "patient_id": pid,
                          "video_id": stem, "labels": {"plane": plane} if labels else {"centre": pid}})
    (root / "spec.yaml").write_text(yaml.safe_dump({"name": "afr", "items": items}))
    out = root / "prepared"
    prepare([root / "spec.yaml"], out, load_config(PrepareConfig, None, [f"resize.size={size}", "crop.method=none"]),
            progress=False)
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("difusal_real")
    spain = make_prepared(base / "spain", domains=("spain",), patients=8, with_ga=False)
    return spain, _african_toy(base / "african")


def _data(african: Path, spain: Path, **kw) -> LoopData:
    rel = Path("..") / ".." / african.parent.name / african.name  # relative to the --data folder
    assert (spain / rel).resolve() == african.resolve()
    return LoopData(size=16, planes=("abdomen", "head"), head_plane="head", test_path=str(rel),
                    test_part="african_test", unlabelled_path=str(rel), unlabelled_part="african_adaptation", **kw)


def test_the_test_set_is_the_african_test_part_and_the_unlabelled_pool_the_adaptation_part(sets):
    from sonoshift.difusal.real_data import external_test, unlabelled_images

    spain, african = sets
    d = _data(african, spain)
    test = external_test(d, spain)
    assert sorted(set(test.patients.tolist())) == sorted(TEST_IDS) and len(test) == 2 * len(TEST_IDS)
    manifests = pd.concat([pd.read_csv(african / f"manifest_{s}.csv", dtype=str) for s in ("train", "val", "test")
                           if (african / f"manifest_{s}.csv").is_file()])
    truth = dict(zip(manifests["path"].map(lambda p: p.split("/")[-2]), manifests["plane"]))
    assert [("abdomen", "head")[y] for y in test.y] == [truth[v.split("/")[1]] for v in test.videos]
    un = unlabelled_images(d, spain)
    assert sorted(set(un.patients.tolist())) == sorted(ADAPT_IDS) and len(un) == 2 * len(ADAPT_IDS)
    assert (un.y == -1).all() and np.isnan(un.ga).all()  # images only: no label is carried
    assert un.x.shape[1:] == (1, 16, 16) and float(un.x.min()) >= -1 and float(un.x.max()) <= 1


def test_training_frames_of_a_test_part_patient_are_refused():
    from sonoshift.difusal.real_data import check_african_rule

    def frames(ids):
        return Frames(torch.zeros(len(ids), 1, 4, 4), np.zeros(len(ids), np.int64), np.full(len(ids), np.nan),
                      np.asarray(ids))

    check_african_rule("african_test", training=frames(ADAPT_IDS + ["00012"]))  # adaptation + Spanish: allowed
    with pytest.raises(SonoshiftError, match="African test-part patients"):
        check_african_rule("african_test", training=frames(["00012", TEST_IDS[1]]))
    check_african_rule("", training=frames(TEST_IDS))  # no African rule declared: nothing to check


def test_harmonize_translates_inside_the_field_of_view_only(monkeypatch, tmp_path):
    import sonoshift.inference.translate as tr
    import sonoshift.methods as methods
    from sonoshift.difusal.real_data import harmonize

    seen = {}

    def fake_run(model, images, device=None):
        seen["n"] = images.shape[0]
        return torch.full_like(images, 0.25)

    monkeypatch.setattr(methods, "load_translator", lambda path, device=None: object())
    monkeypatch.setattr(tr, "run_translator", fake_run)
    x = torch.full((3, 1, 8, 8), 0.5)
    x[:, :, :, :2] = -1.0  # black outside the fan
    out = harmonize(x, tmp_path)
    assert seen["n"] == 3
    assert (out[:, :, :, :2] == -1).all() and (out[:, :, :, 2:] == 0.25).all()
    with pytest.raises(SonoshiftError, match="does not exist"):
        harmonize(x, tmp_path / "missing")


def test_frames_carry_domain_tokens_through_take_and_concat():
    a = Frames(torch.zeros(2, 1, 2, 2), np.zeros(2, np.int64), np.zeros(2), np.array(["a", "b"])).with_domain(2)
    b = Frames(torch.ones(3, 1, 2, 2), np.ones(3, np.int64), np.zeros(3), np.array(["c", "d", "e"]))
    c = Frames.concat([a, b])
    assert c.domain.tolist() == [2, 2, 0, 0, 0]  # frames without a token get the unknown token 0
    assert c.take(np.array([4, 0])).domain.tolist() == [0, 2]
    assert Frames.concat([b, b]).domain is None


def test_accuracy_on_resamples_by_hand():
    from sonoshift.difusal.intervals import accuracy_on, bootstrap, resamples

    y = np.array([0, 1, 1, 0])
    p = {"y": y, "pred": np.array([[0, 1, 0, 0], [0, 0, 0, 0]]), "ga": np.full(4, np.nan),
         "ga_est": np.full((2, 4), np.nan), "patients": np.array(["a", "a", "b", "b"])}
    assert accuracy_on(p, np.arange(4)) == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert accuracy_on(p, np.array([1, 1])) == pytest.approx((1 + 0) / 2)
    sets = resamples(p["patients"], 20, seed=0)
    boots = bootstrap(p, sets, 2)
    assert boots.shape == (20, 3)
    for s, row in zip(sets, boots):
        assert row[2] == pytest.approx(np.mean([(p["pred"][k][s] == y[s]).mean() for k in range(2)]))


def test_verdict_on_accuracy_names_the_best_arm_including_harmonized_rows():
    from sonoshift.difusal.report import verdict

    rows = [("real", 0.60, 0.70), ("classical_aug", 0.65, 0.66), ("unfiltered", 0.62, 0.64), ("difusal", 0.70, 0.82)]
    t = pd.DataFrame([{"regime": "regime_100", "round": 3, "arm": a, "accuracy": acc, "macro_f1": 0.5,
                       "ga_mae_days": np.nan, "harmonized_accuracy": h} for a, acc, h in rows])
    (v,) = verdict(t, 3, "accuracy", 0.15, 0.02)
    assert v.startswith("regime_100: DiFUSAL accuracy 0.700 vs the better of real-only / classical augmentation 0.650")
    assert "(+5.0 points; target +15: NOT met)" in v and "vs unfiltered 0.620 (+8.0; target +2: met)" in v
    assert "best declared arm: difusal + harmonized test 0.820 (+17.0 points over the better baseline; " \
           "target +15: met)" in v
    t["adapted_accuracy"] = [0.71, 0.84, 0.6, 0.5]  # a second test variant competes for the best declared arm
    (v,) = verdict(t, 3, "accuracy", 0.15, 0.02)
    assert "best declared arm: classical_aug + adapted BN 0.840 (+19.0 points over the better baseline" in v


def test_loop_on_spain_with_the_african_test_part_and_domain_tokens(sets, tmp_path, monkeypatch):
    import sonoshift.difusal.real_data as rd
    from sonoshift.difusal.report import write_report
    from sonoshift.difusal.rounds import load_regimes, run_difusal, stage_dir

    spain, african = sets
    monkeypatch.setattr(rd, "harmonize", lambda x, path: -x)  # a stand-in translator that changes every frame
    d = _data(african, spain)
    over = [f"data.test_path={d.test_path}", "data.test_part=african_test", f"data.unlabelled_path={d.unlabelled_path}",
            "data.unlabelled_part=african_adaptation", "data.harmonizer=cyclegan", "data.adapt_bn=true",
            "data.adapt_zooms=[1,1.5]", "data.planes=[abdomen,head]",
            "data.size=16", "label_fractions=[0.5]", "loop.rounds=1", "loop.budget=4", "loop.floor=1",
            "loop.ga_edges=[16,40]", "downstream.steps=6", "downstream.ga_steps=4", "downstream.batch_size=8",
            "generator.pretrain_steps=3", "generator.finetune_steps=2", "generator.sample_steps=2",
            "generator.probe=2", "generator.batch_size=4", "generator.unlabelled=4", "generator.sample_domain=extra",
            "critics.realism_reference=with_extra", "critics.plane_conf=0.0", "critics.realism_percentile=100",
            "loop.easy_conf=1.0", "headline=[accuracy,macro_f1]", "target_gain=0.15"]
    cfg = load_config(DifusalConfig, None, over)
    (reg,) = load_regimes(cfg, spain)
    assert sorted(set(reg.test.patients.tolist())) == sorted(TEST_IDS)
    torch.testing.assert_close(reg.test_harmonized.x, -reg.test.x)  # same frames, same order, translated
    assert (reg.extra.domain == 2).all() and (reg.train.domain == 1).all() and (reg.unlabelled.domain == 1).all()
    assert reg.adapt is reg.extra  # AdaBN re-normalizes on the adaptation part's images only
    assert not np.isfinite(reg.train.ga).any() and not reg.has_ga
    run = tmp_path / "run"
    run_difusal(cfg, spain, run, progress=False)
    setup = json.loads((stage_dir(run, "regime_050", "setup", 0) / "setup.json").read_text())
    assert setup["n_extra_unlabelled"] == 2 * len(ADAPT_IDS) and setup["n_test"] == 2 * len(TEST_IDS)
    # the memorization guard covers labelled + Spanish unlabelled + African adaptation images
    assert setup["memo_calibration"]["n_images"] == setup["n_train"] + setup["n_unlabelled"] + 2 * len(ADAPT_IDS)
    f = stage_dir(run, "regime_050", "difusal", 1)
    s = pd.read_csv(f / "scores.csv")
    assert len(s) == 4 and s["ga_weeks"].isna().all()  # no GA label anywhere: candidates use the null GA
    raw, harm = np.load(f / "test_predictions.npz"), np.load(f / "test_predictions_harmonized.npz")
    assert sorted(set(raw["patients"].tolist())) == sorted(TEST_IDS) and (raw["y"] == harm["y"]).all()
    m = json.loads((f / "metrics.json").read_text())
    assert m["harmonized_accuracy"] == pytest.approx(
        np.mean([(harm["pred"][k] == harm["y"]).mean() for k in range(harm["pred"].shape[0])]))
    adapted = np.load(f / "test_predictions_adapted.npz")  # same models re-normalized, raw test frames
    assert (adapted["y"] == raw["y"]).all() and adapted["pred"].shape == raw["pred"].shape
    assert m["adapted_accuracy"] == pytest.approx(
        np.mean([(adapted["pred"][k] == adapted["y"]).mean() for k in range(adapted["pred"].shape[0])]))
    zoomed = np.load(f / "test_predictions_adapted_zoomed.npz")  # zoom ensembles re-normalized at each zoom
    assert (zoomed["y"] == raw["y"]).all() and zoomed["pred"].shape == raw["pred"].shape
    assert m["adapted_zoomed_accuracy"] == pytest.approx(
        np.mean([(zoomed["pred"][k] == zoomed["y"]).mean() for k in range(zoomed["pred"].shape[0])]))
    page = write_report(run).read_text()
    assert "DiFUSAL accuracy" in page and "+ harmonized test" in page and "target +15" in page
    assert "difusal + adapted BN" in page and "adapted_accuracy" in page
    assert "difusal + adapted BN at zooms" in page
    with pytest.raises(SonoshiftError, match="needs data.adapt_bn"):
        load_regimes(load_config(DifusalConfig, None, [o for o in over if "adapt_bn" not in o]), spain)
    with pytest.raises(SonoshiftError, match="data.adapt_bn needs data.unlabelled_path"):
        load_regimes(load_config(DifusalConfig, None, [o for o in over if "unlabelled" not in o
                                                      and "with_extra" not in o and "sample_domain" not in o]), spain)


@pytest.mark.slow
def test_domain_tokens_steer_the_generator_toward_the_unlabelled_look():
    from sonoshift.difusal import generator as gen_mod
    from sonoshift.difusal.config import Generator

    g = Generator(block_out_channels=(16, 32), attention=(False, False), pretrain_steps=300, batch_size=16,
                  warmup_steps=10, sample_steps=8, guidance=3.0, sample_domain="extra", unlabelled_share=0.5,
                  ema_decay=0.0)
    n = 16
    # labelled frames of --data are dark, the unlabelled images of the other domain bright
    dark = Frames(torch.full((n, 1, 8, 8), -0.6), np.tile([0, 1], n // 2), np.full(n, np.nan),
                  np.arange(n).astype(str)).with_domain(1)
    bright = Frames(torch.full((n, 1, 8, 8), 0.6), np.full(n, -1), np.full(n, np.nan),
                    np.arange(n).astype(str)).with_domain(2)
    pipe = gen_mod.build(g, ("a", "b"), 8, seed=0)
    gen_mod.train(pipe, dark, g.pretrain_steps, g, seed=1, unlabelled=bright)
    planes, ga = np.array([0, 1] * 4), np.full(8, np.nan)
    look_extra = gen_mod.sample(pipe, planes, ga, seed=5, domain="extra").mean().item()
    look_data = gen_mod.sample(pipe, planes, ga, seed=5, domain="data").mean().item()
    # the "extra" token brightens the samples (plane + "extra" was never seen together: the plane tokens were
    # learnt on dark frames only, so the look is a compromise, not the unlabelled images' brightness)
    assert look_data < -0.4 and look_extra - look_data > 0.4


def test_demo_real_stage_reads_the_spain_africa_stage_layout(tmp_path, monkeypatch):
    """``demo --real``'s loop: --data = the stage's translation set (Spanish labelled + African adaptation
    images), test = its african_test set, harmonizer = its CycleGAN folder."""
    import sonoshift.difusal.real_data as rd
    from sonoshift.pipeline.demo_difusal import DemoDifusalConfig, run_real_difusal
    from sonoshift.pipeline.stages import StageLog

    sa = tmp_path / "spain_africa"
    spanish = []
    for i in range(6):
        for kind, plane in enumerate(("head", "abdomen")):
            stem = f"es{i}_{plane}"
            (sa / "t").mkdir(parents=True, exist_ok=True)
            np.save(sa / "t" / f"{stem}.npy", _frames(1, kind, 24.0, seed=100 + 7 * i + kind))
            spanish.append({"path": f"{stem}.npy", "domain": "spain", "patient_id": f"0000{i}", "video_id": stem,
                            "labels": {"plane": plane}})
    trans = _african_toy(sa / "t", ids=ADAPT_IDS, domain="africa", labels=False, extra=spanish)
    trans.rename(sa / "translation")
    _african_toy(sa / "a", ids=TEST_IDS, domain="africa").rename(sa / "african_test")
    (sa / "models" / "cyclegan").mkdir(parents=True)
    seen = []
    monkeypatch.setattr(rd, "harmonize", lambda x, path, reverse=False: seen.append((Path(path).resolve(), reverse))
                        or (x * 0.5 if reverse else -x))
    monkeypatch.setattr("sonoshift.methods.has_reverse", lambda path: True)  # the stand-in "CycleGAN" folder
    over = ("data.planes=[abdomen,head]", "data.head_plane=head", "data.size=16", "loop.rounds=1", "loop.budget=4", "loop.floor=1",
            "downstream.steps=4", "downstream.batch_size=8", "generator.pretrain_steps=2", "generator.finetune_steps=1",
            "generator.sample_steps=2", "generator.probe=2", "generator.batch_size=4",
            "generator.block_out_channels=[8,16]", "generator.attention=[false,false]", "loop.per_plane_cap=0")
    dcfg = DemoDifusalConfig(config="configs/cpu/difusal_real_demo.yaml", overrides=over, reuse_plane_judge=False)
    s = run_real_difusal(dcfg, tmp_path / "root", sa, StageLog(), False, False)
    cg = (sa / "models" / "cyclegan").resolve()
    assert sorted(seen) == [(cg, False), (cg, True)]  # test frames toward Spain, Spanish frames toward Africa
    run = Path(s["run"])
    setup = json.loads((run / "regime_100" / "setup" / "setup.json").read_text())
    assert setup["n_extra_unlabelled"] == 2 * len(ADAPT_IDS) and setup["n_test"] == 2 * len(TEST_IDS)
    assert set(setup["train_patients"]) <= {f"0000{i}" for i in range(6)}  # Spanish labels only
    pred = np.load(run / "regime_100" / "difusal" / "round_1" / "test_predictions_harmonized.npz")
    assert sorted(set(pred["patients"].tolist())) == sorted(TEST_IDS)
    adapted = np.load(run / "regime_100" / "difusal" / "round_1" / "test_predictions_adapted.npz")  # data.adapt_bn
    assert sorted(set(adapted["patients"].tolist())) == sorted(TEST_IDS)
    assert s["verdict"][0].startswith("regime_100: DiFUSAL accuracy") and "harmonized_accuracy" in s["headline"][0]
    assert {"translated", "translated_difusal"} <= {row["arm"] for row in s["headline"]}


def test_translated_arms_train_on_the_labelled_frames_translated_backwards(sets, tmp_path, monkeypatch):
    """The translated arms (arms.py): the regime's labelled frames and their copies made by the harmonizer's
    reverse generator (same frames, same order, labels kept); "both together" takes the DiFUSAL arm's accepted
    images; refused in one sentence without data.harmonizer."""
    import sonoshift.difusal.real_data as rd
    import sonoshift.difusal.rounds as rounds
    from sonoshift.difusal.arms import ARMS
    from sonoshift.difusal.data import load_split, regime_split
    from sonoshift.difusal.rounds import check_config, load_regimes, run_difusal, stage_dir

    spain, african = sets
    calls = []
    monkeypatch.setattr(rd, "harmonize", lambda x, path, reverse=False: calls.append(reverse) or (
        x * 0.5 if reverse else -x))  # stand-ins: backwards halves every pixel, forwards negates
    seen = {}
    real_frames = rounds.training_frames

    def recording(reg, arm, synthetic=None):
        f = real_frames(reg, arm, synthetic)
        seen.setdefault(arm.name, []).append(len(f))
        return f

    monkeypatch.setattr(rounds, "training_frames", recording)
    real_select = rounds.select
    monkeypatch.setattr(rounds, "select", lambda *a, **k: real_select(*a, **k).assign(
        reason="accepted", accepted=True))  # every candidate accepted: the lent set is not empty
    d = _data(african, spain)
    over = [f"data.test_path={d.test_path}", "data.test_part=african_test", f"data.unlabelled_path={d.unlabelled_path}",
            "data.unlabelled_part=african_adaptation", "data.harmonizer=cyclegan", "data.planes=[abdomen,head]",
            "data.size=16", "label_fractions=[0.5]", "loop.rounds=1", "loop.budget=4", "loop.floor=1",
            "loop.ga_edges=[16,40]", "downstream.steps=4", "downstream.ga_steps=2", "downstream.batch_size=8",
            "generator.pretrain_steps=2", "generator.finetune_steps=1", "generator.sample_steps=2",
            "generator.probe=2", "generator.batch_size=4", "generator.block_out_channels=[8,16]",
            "generator.attention=[false,false]", "critics.plane_conf=0.0", "critics.realism_percentile=100",
            "loop.easy_conf=1.0", "loop.synthetic_classical_aug=false", "headline=[accuracy,macro_f1]",
            "arms=[real,classical_aug,difusal,translated,translated_difusal]"]
    cfg = load_config(DifusalConfig, None, over)
    (reg,) = load_regimes(cfg, spain)
    expected = regime_split(load_split(spain, "train", ("abdomen", "head"), 16), 0.5, cfg.data.max_per_class, 2,
                            cfg.seed)[0]  # the regime's frames as regime_split draws them
    torch.testing.assert_close(reg.train.x, expected.x)
    assert (reg.train.patients == expected.patients).all()
    torch.testing.assert_close(reg.translated.x, reg.train.x * 0.5)  # frame by frame, labels kept
    assert (reg.translated.y == reg.train.y).all() and (reg.translated.patients == reg.train.patients).all()
    assert True in calls
    run = tmp_path / "run"
    seen.clear()
    run_difusal(cfg, spain, run, progress=False)
    n = len(reg.train)
    acc = json.loads((stage_dir(run, "regime_050", "difusal", 1) / "metrics.json").read_text())["n_synthetic"]
    assert acc == cfg.loop.budget
    assert seen["translated"] == [2 * n] and seen["classical_aug"] == [n]  # real + translated (round 0 only)
    assert seen["translated_difusal"] == [2 * n, 2 * n + acc] and seen["difusal"] == [n + acc]
    assert rounds.augments(cfg, ARMS["translated"]) and not rounds.augments(cfg, ARMS["translated_difusal"])
    both = np.load(stage_dir(run, "regime_050", "translated_difusal", 1) / "synthetic_cumulative.npz")
    lent = np.load(stage_dir(run, "regime_050", "difusal", 1) / "synthetic_cumulative.npz")
    assert (both["images"] == lent["images"]).all() and (both["plane"] == lent["plane"]).all()
    table = pd.read_csv(run / "metrics.csv")
    assert {"translated", "translated_difusal"} <= set(table["arm"])
    with pytest.raises(SonoshiftError, match="arm 'translated' needs data.harmonizer"):
        check_config(load_config(DifusalConfig, None, [o for o in over if "harmonizer" not in o]))


def test_harmonize_backwards_is_the_cyclegans_target_to_source_generator(tiny_dataset, tmp_path):
    from sonoshift.difusal.real_data import harmonize
    from sonoshift.inference.translate import run_translator
    from sonoshift.methods import has_reverse, load_translator
    from sonoshift.methods.cyclegan import CycleGANConfig, train_cyclegan

    data = tiny_dataset(tmp_path / "data", n_src=4, size=16, related=True)
    cg = tmp_path / "cg"
    tiny = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "model.d_layers=2", "loss.pool_size=2",
            "train.batch_size=2", "train.max_steps=2", "train.device=cpu", "train.precision=fp32",
            "train.tensorboard=false", "train.image_every=0", "train.log_every=1"]
    train_cyclegan(data, load_config(CycleGANConfig, None, tiny), cg, progress=False)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x[:, :, :4] = -1.0  # outside the field of view
    assert has_reverse(cg)
    back = harmonize(x, cg, reverse=True)
    with torch.no_grad():
        ref = run_translator(load_translator(cg, reverse=True), x).float().clamp(-1, 1)
    torch.testing.assert_close(back[:, :, 4:], ref[:, :, 4:])
    assert (back[:, :, :4] == -1).all()
    assert (back - harmonize(x, cg)).abs().max() > 1e-3  # not the forward generator


def test_translated_frames_need_a_harmonizer_with_a_reverse_generator(sets, tmp_path):
    from sonoshift.difusal.real_data import translated_train
    from sonoshift.methods import has_reverse

    spain, african = sets
    (tmp_path / "not_a_run").mkdir()
    assert not has_reverse(tmp_path / "not_a_run")
    with pytest.raises(SonoshiftError, match="has no reverse generator: the translated arms need a CycleGAN run"):
        translated_train(_data(african, spain, harmonizer=str(tmp_path / "not_a_run")), spain)
    with pytest.raises(SonoshiftError, match="need data.harmonizer"):
        translated_train(_data(african, spain), spain)
