"""A tiny DiFUSAL run end to end on a simulated toy dataset (discs = heads whose size follows GA, bars =
abdomens): every stage's files, one reason per candidate, label hygiene, resume skipping finished rounds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sonoshift.config import load_config
from sonoshift.difusal.config import DifusalConfig
from sonoshift.difusal.report import write_report
from sonoshift.difusal.rounds import run_difusal, stage_dir, stages
from sonoshift.difusal.selection import REASONS
from sonoshift.errors import SonoshiftError
from synth_data import make_prepared

TINY = ["data.planes=[abdomen,head]", "data.size=16", "label_fractions=[0.5]", "loop.rounds=2", "loop.budget=12",
        "loop.floor=1", "loop.ga_edges=[19,25,31]", "downstream.steps=8", "downstream.ga_steps=8",
        "downstream.batch_size=8", "downstream.seeds=2", "generator.pretrain_steps=4", "generator.finetune_steps=2",
        "generator.sample_steps=2", "generator.probe=2", "generator.batch_size=4",
        "critics.plane_conf=0.0", "critics.realism_percentile=100", "loop.easy_conf=1.0"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("difusal") / "toy", patients=8)


def test_loop_end_to_end_and_resume(toy, tmp_path):
    cfg = load_config(DifusalConfig, None, TINY)
    run = tmp_path / "run"
    all_stages = stages(cfg)
    # 1 setup + 5 arms at round 0 + 3 per round (difusal, uniform, then unfiltered which borrows) x 2 rounds
    assert len(all_stages) == 12
    first = run_difusal(cfg, toy, run, progress=False, max_stages=7)  # "killed" after round 1 of difusal
    assert first == all_stages[:7] and first[1] == ("regime_050", "real", 0) and first[-1][2] == 1
    stamp = {s: (stage_dir(run, *s) / ("setup.json" if s[1] == "setup" else "metrics.json")).stat().st_mtime_ns
             for s in first}
    second = run_difusal(cfg, toy, run, progress=False)
    assert second == all_stages[7:]  # finished rounds are skipped, the rest continues
    for s, t in stamp.items():
        assert (stage_dir(run, *s) / ("setup.json" if s[1] == "setup" else "metrics.json")).stat().st_mtime_ns == t
    assert run_difusal(cfg, toy, run, progress=False) == []

    # every candidate has exactly one reason; the accepted set is the rows marked accepted
    for k in (1, 2):
        f = stage_dir(run, "regime_050", "difusal", k)
        s = pd.read_csv(f / "scores.csv")
        assert len(s) == 12 and set(s["reason"]) <= {"accepted", *REASONS}
        assert len(np.load(f / "accepted.npz")["plane"]) == int(s["accepted"].sum())
        w = pd.read_csv(f / "weakness.csv")
        assert w["allocated"].sum() == 12 and w["allocated"].min() >= 1
        m = json.loads((f / "metrics.json").read_text())
        assert m["n_accepted"] + sum(m[f"rejected_{r}"] for r in REASONS) == 12
        assert 0.0 <= m["near_copy_rate_after_finetune"] <= 1.0
        # two training seeds: both saved, the scores are their mean, the predictions hold one row per seed
        assert (f / "seed1_plane.safetensors").is_file() and m["n_seeds"] == 2
        assert np.load(f / "test_predictions.npz")["pred"].shape[0] == 2
        # the unfiltered arm adds as many images as DiFUSAL accepted in that round
        u = stage_dir(run, "regime_050", "unfiltered", k)
        assert len(np.load(u / "accepted.npz")["plane"]) == m["n_accepted"]
    # cumulative synthetic set = sum of the rounds' accepted sets
    cum = np.load(stage_dir(run, "regime_050", "difusal", 2) / "synthetic_cumulative.npz")["plane"]
    acc = [len(np.load(stage_dir(run, "regime_050", "difusal", k) / "accepted.npz")["plane"]) for k in (1, 2)]
    assert len(cum) == sum(acc)

    # label hygiene: critics and generator were fitted on half of the training patients only
    setup = json.loads((stage_dir(run, "regime_050", "setup", 0) / "setup.json").read_text())
    train = pd.read_csv(toy / "manifest_train.csv")
    assert len(setup["train_patients"]) == round(0.5 * train["patient_id"].nunique())
    assert set(setup["train_patients"]) <= set(train["patient_id"])

    table = pd.read_csv(run / "metrics.csv")
    assert len(table) == 5 * 3  # 5 arms x rounds 0..2 (real / classical_aug repeat their round 0)
    assert table["macro_f1"].between(0, 1).all()
    page = write_report(run).read_text()
    assert page.index("Verdict") < page.index("Headline") and "regime_050_curves.png" in page


def test_a_changed_config_refuses_the_old_run_folder(toy, tmp_path):
    cfg = load_config(DifusalConfig, None, TINY)
    run_difusal(cfg, toy, tmp_path / "run", progress=False, max_stages=1)
    other = load_config(DifusalConfig, None, [*TINY, "loop.budget=14"])
    with pytest.raises(SonoshiftError, match="another config"):
        run_difusal(other, toy, tmp_path / "run", progress=False)


def test_a_first_run_refused_for_its_data_leaves_no_folder(tmp_path):
    data = make_prepared(tmp_path / "noplanes", patients=3, with_plane=False)
    with pytest.raises(SonoshiftError, match="has no frame of the planes abdomen, head"):
        run_difusal(load_config(DifusalConfig, None, TINY), data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # no config.yaml that a later run would take for a resumable one


def test_bad_arms_are_one_sentence():
    with pytest.raises(SonoshiftError, match="unknown arm 'gan'"):
        run_difusal(load_config(DifusalConfig, None, [*TINY, "arms=[real,gan]"]), "x", "y")
    with pytest.raises(SonoshiftError, match="needs arm 'difusal'"):
        run_difusal(load_config(DifusalConfig, None, [*TINY, "arms=[real,unfiltered]"]), "x", "y")


def test_image_guided_candidates_record_their_starts(toy, tmp_path):
    from sonoshift.difusal.report import contact_sheet_png

    cfg = load_config(DifusalConfig, None, [*TINY, "arms=[real,difusal]", "loop.rounds=1", "generator.unlabelled=40",
                                            "loop.init_strength=0.5", "loop.init_match=true"])
    run_difusal(cfg, toy, tmp_path / "run", progress=False)
    f = stage_dir(tmp_path / "run", "regime_050", "difusal", 1)
    s = pd.read_csv(f / "scores.csv")
    starts, cands = np.load(f / "starts.npz")["images"], np.load(f / "candidates.npz")["images"]
    assert len(starts) == len(cands) == len(s) == 12
    assert s["init_index"].between(0, 39).all()  # an index into the 40 unlabelled images
    assert not np.array_equal(starts, cands)  # denoised from the start, not the start itself
    assert contact_sheet_png(f, tuple(cfg.data.planes), False, tmp_path / "sheet.png") or \
        contact_sheet_png(f, tuple(cfg.data.planes), True, tmp_path / "sheet.png")
    assert "noised to strength 0.5" in write_report(tmp_path / "run").read_text()
