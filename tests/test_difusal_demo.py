"""The demo's DiFUSAL stage on tiny data, and the pieces it added to the loop: the demo's plane judge as the frozen
plane critic (label hygiene), unlabelled generator images (labels stripped), the GA critic's slack, classical
augmentation for the synthetic arms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sonoshift.config import load_config
from sonoshift.difusal.config import DifusalConfig
from sonoshift.difusal.critics import ga_slack
from sonoshift.difusal.data import Frames, regime_split, unlabelled_frames
from sonoshift.difusal.judge_critic import JudgeCritic
from sonoshift.difusal.rounds import check_config, run_difusal, stage_dir
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.pipeline.demo_difusal import DemoDifusalConfig, loop_config, report_sections, run_demo_difusal
from sonoshift.pipeline.stages import StageLog
from synth_data import make_prepared

# the demo loop's config shrunk to seconds (two planes of the toy data)
TINY_DEMO = ("data.planes=[abdomen,head]", "data.background_plane=''", "data.size=16", "loop.rounds=1",
             "loop.budget=6", "loop.floor=1", "loop.ga_edges=[19,25,31]", "loop.per_plane_cap=0",
             "downstream.steps=6", "downstream.ga_steps=6", "downstream.batch_size=8",
             "generator.block_out_channels=[8,16]", "generator.attention=[false,false]",
             "generator.pretrain_steps=4", "generator.finetune_steps=2", "generator.sample_steps=2",
             "generator.probe=2", "generator.batch_size=4", "critics.plane_conf=0.0",
             "critics.realism_percentile=100", "loop.easy_conf=1.0")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("difusal_demo") / "toy", patients=6)


@pytest.fixture(scope="module")
def judge(toy, tmp_path_factory):
    """A plane classifier trained on the toy data's target-domain training labels (the demo's judge)."""
    from sonoshift.pipeline.judges import JudgesConfig, train_plane_judge

    out = tmp_path_factory.mktemp("judge") / "plane_classifier"
    train_plane_judge(toy, out, JudgesConfig(plane_image_size=16, steps_plane=5), domain="cart", seed=0,
                      progress=False)
    return out


def test_demo_stage_runs_on_tiny_data_reuses_the_judge_and_is_skipped_when_done(toy, judge, tmp_path):
    dcfg = DemoDifusalConfig(overrides=TINY_DEMO)
    log = StageLog()
    s = run_demo_difusal(dcfg, tmp_path, toy, judge, "toy-data", log, force=False, progress=False)
    assert log.entries["DiFUSAL synthesis loop"]["status"] == "ran"
    run = tmp_path / "difusal"
    # the loop ran every declared arm to the last round, in the 100% regime, with the demo's judge as critic
    assert {r["arm"] for r in s["headline"]} == {"real", "classical_aug", "unfiltered", "difusal"}
    assert all(r["round"] == 1 and 0 <= r["macro_f1"] <= 1 for r in s["headline"])
    setup = json.loads((stage_dir(run, "regime_100", "setup", 0) / "setup.json").read_text())
    assert setup["critic_plane"] == str(judge) and s["plane_critic"] == str(judge)
    assert not (stage_dir(run, "regime_100", "setup", 0) / "critic_plane.safetensors").exists()
    assert Path(s["report"]).is_file() and s["verdict"][0].startswith("regime_100: DiFUSAL macro-F1")
    assert s["loop_cpu_seconds"] > 0
    # the demo report gets the verdict first, then the figures
    first, second = report_sections(s)
    assert "verdict" in first.title and first.caption.startswith("Verdict (smoke measurement, see below): regime_100: DiFUSAL")
    assert "smoke" in first.caption and len(first.table) == 4
    assert second.images and all(Path(p).is_file() for p in second.images)

    again = StageLog()
    assert run_demo_difusal(dcfg, tmp_path, toy, judge, "toy-data", again, False, False) == s
    assert again.entries["DiFUSAL synthesis loop"]["status"] == "reused"
    # other settings: the old loop folder (whose config the loop would refuse) is replaced, not mixed
    other = DemoDifusalConfig(overrides=(*TINY_DEMO, "loop.budget=8"))
    third = StageLog()
    run_demo_difusal(other, tmp_path, toy, judge, "toy-data", third, False, False)
    assert third.entries["DiFUSAL synthesis loop"]["status"] == "ran"
    assert json.loads((stage_dir(run, "regime_100", "difusal", 1) / "metrics.json").read_text())["n_candidates"] == 8


def test_a_judge_trained_elsewhere_is_a_critic_only_when_every_regime_keeps_all_labels(judge):
    full = loop_config(DemoDifusalConfig(overrides=TINY_DEMO), judge)
    assert full.critics.plane_checkpoint == str(judge)
    half = loop_config(DemoDifusalConfig(overrides=(*TINY_DEMO, "label_fractions=[0.5]")), judge)
    assert half.critics.plane_checkpoint == ""  # the loop fits its own critics on the regime's labels
    assert loop_config(DemoDifusalConfig(overrides=TINY_DEMO, reuse_plane_judge=False), judge).critics.plane_checkpoint == ""
    bad = load_config(DifusalConfig, None, ["label_fractions=[0.1,1.0]", f"critics.plane_checkpoint={judge}"])
    with pytest.raises(SonoshiftError, match="only allowed when every label regime keeps all labels"):
        check_config(bad)


def test_judge_critic_reorders_classes_and_resizes_inputs():
    torch.manual_seed(0)
    net = PlaneNet(3, NetConfig(stem=4, widths=(8,), dropout=0.0)).eval()
    critic = JudgeCritic(net, 16, [2, 0, 1]).eval()  # loop plane i is the judge's class order[i]
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        np.testing.assert_allclose(critic(x).numpy(), net(x)[:, [2, 0, 1]].numpy(), rtol=1e-6)
        # a flat 8 px image is the same flat image at 16 px after resizing
        flat8, flat16 = torch.full((2, 1, 8, 8), 0.3), torch.full((2, 1, 16, 16), 0.3)
        np.testing.assert_allclose(critic(flat8).numpy(), net(flat16)[:, [2, 0, 1]].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(critic.features(flat8).numpy(), net.features(flat16).numpy(), rtol=1e-5,
                                   atol=1e-6)


def _frames(n_pat: int, per: int) -> Frames:
    pats = np.repeat([f"P{i}" for i in range(n_pat)], per)
    n = len(pats)
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4) / n
    return Frames(x, np.arange(n) % 3, 20.0 + np.arange(n) % 5, pats, np.array([f"{p}/v" for p in pats]))


def test_unlabelled_frames_come_from_the_other_patients_with_their_labels_stripped():
    train = _frames(6, 10)
    lab, rest = regime_split(train, 0.5, 100, 3, seed=4)
    assert rest == set(np.unique(train.patients)) - set(np.unique(lab.patients)) and len(rest) == 3
    un = unlabelled_frames(train, rest, 12, seed=1)
    assert len(un) == 12 and set(un.patients) <= rest
    assert (un.y == -1).all() and np.isnan(un.ga).all()
    # the draw never looks at labels: the same images whatever the labels were
    relabelled = Frames(train.x, (train.y + 1) % 3, train.ga[::-1].copy(), train.patients, train.videos)
    assert torch.equal(unlabelled_frames(relabelled, rest, 12, seed=1).x, un.x)
    assert len(unlabelled_frames(train, rest, 1000, seed=1)) == 30  # fewer frames than asked: all of them


class _ConstantGa(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), 30.0)


def test_ga_slack_is_the_critics_mean_error_on_validation_heads():
    val = Frames(torch.zeros(4, 1, 4, 4), np.array([1, 1, 0, 1]), np.array([24.0, 33.0, 10.0, np.nan]),
                 np.array(["a"] * 4))
    # head = 1: frames 0 and 1 (frame 3 has no GA, frame 2 is another plane): |30-24| and |30-33|
    assert ga_slack(_ConstantGa(), val, head=1) == pytest.approx(4.5)
    assert ga_slack(None, val, head=1) == 0.0


def test_semi_supervised_loop_guards_the_unlabelled_images_and_augments_the_synthetic_arms(toy, tmp_path):
    over = [o for o in TINY_DEMO if not o.startswith("data.background_plane")]
    cfg = load_config(DifusalConfig, None, [*over, "label_fractions=[0.5]", "arms=[real,difusal]",
                                            "generator.unlabelled=5", "critics.ga_slack=val_mae",
                                            "loop.synthetic_classical_aug=true",
                                            "generator.pseudo_label_conf=0.5"])
    # setup, real, difusal rounds 0 and 1 (the loop round fine-tunes on the pseudo-labelled images again)
    run_difusal(cfg, toy, tmp_path / "run", progress=False, max_stages=4)
    setup = json.loads((stage_dir(tmp_path / "run", "regime_050", "setup", 0) / "setup.json").read_text())
    assert setup["n_unlabelled"] == 5
    # two planes, no background plane: every unlabelled image gets a plane (one is always >= 0.5)
    assert setup["pseudo_labels_per_plane"][0] + setup["pseudo_labels_per_plane"][1] == 5
    assert (stage_dir(tmp_path / "run", "regime_050", "difusal", 1) / "generator.safetensors").is_file()
    # the memorization guard covers every image the generator trains on: labelled and unlabelled
    assert setup["memo_calibration"]["n_images"] == setup["n_train"] + 5
    assert setup["critic_ga_slack_weeks"] >= 0.0
    # round 0 of a synthetic arm trains with classical augmentation: other weights than the real arm's
    from safetensors.torch import load_file

    real = load_file(str(stage_dir(tmp_path / "run", "regime_050", "real", 0) / "plane.safetensors"))
    dif = load_file(str(stage_dir(tmp_path / "run", "regime_050", "difusal", 0) / "plane.safetensors"))
    assert any(not torch.equal(real[k], dif[k]) for k in real)


def test_loop_frames_can_be_restricted_to_domains(toy):
    from sonoshift.difusal.data import load_split

    both = load_split(toy, "train", ("abdomen", "head"), 16)
    cart = load_split(toy, "train", ("abdomen", "head"), 16, ("cart",))
    # the toy data's patients are named by domain ("cart3", "handheld1"): only cart ones are kept, all of them
    assert set(cart.patients) == {p for p in both.patients if p.startswith("cart")} and len(cart) < len(both)
    with pytest.raises(SonoshiftError, match="in the domains nowhere"):
        load_split(toy, "train", ("abdomen", "head"), 16, ("nowhere",))
