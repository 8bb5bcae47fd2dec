"""The GA-only DiFUSAL study (HC18: heads only, no plane column): rows without a plane label count as the head
plane (``data.fill_plane``), the one-plane "classifier" is certain and embeds with the GA regressor's features,
a killed run resumes, and the verdict compares GA MAE (lower is better)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

from sonoshift.config import load_config
from sonoshift.difusal.config import DifusalConfig
from sonoshift.difusal.data import load_split
from sonoshift.difusal.downstream import one_plane, plane_probs, train_ga
from sonoshift.difusal.report import config_verdict, write_report
from sonoshift.difusal.rounds import run_difusal, stage_dir, stages
from sonoshift.difusal.weakness import plane_weakness
from sonoshift.errors import SonoshiftError
from synth_data import make_prepared

ONE = ["data.planes=[head]", "data.head_plane=head", "data.fill_plane=head", "data.size=16", "headline=[ga_mae_days]",
       "label_fractions=[1.0]", "arms=[real,classical_aug,unfiltered,difusal]", "loop.rounds=1", "loop.budget=8",
       "loop.floor=1", "loop.ga_edges=[19,25,31]", "downstream.steps=8", "downstream.ga_steps=8",
       "downstream.batch_size=8", "downstream.seeds=1", "generator.pretrain_steps=4", "generator.finetune_steps=2",
       "generator.sample_steps=2", "generator.probe=2", "generator.batch_size=4", "critics.plane_conf=0.0",
       "critics.realism_percentile=100", "loop.easy_conf=1.0", "loop.per_plane_cap=8"]


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A prepared toy set like HC18: head frames only (discs whose size follows GA) and no plane column."""
    root = make_prepared(tmp_path_factory.mktemp("one_plane") / "toy", patients=8, with_plane=False)
    for man in root.glob("manifest_*.csv"):
        with open(man) as f:
            rows = [r for r in csv.DictReader(f) if not r["video_id"].endswith("_abdomen")]
        with open(man, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


def _rows(root, split):
    with open(root / f"manifest_{split}.csv") as f:
        return list(csv.DictReader(f))


def test_rows_without_a_plane_count_as_the_fill_plane(heads):
    rows = _rows(heads, "train")
    assert rows and all(not (r.get("plane") or "") for r in rows)
    with pytest.raises(SonoshiftError, match="no frame of the planes"):
        load_split(heads, "train", ("head",), 16)  # no plane label, no fill: nothing to load
    f = load_split(heads, "train", ("head",), 16, fill_plane="head")
    assert len(f) == len(rows) and (f.y == 0).all()
    assert np.allclose(f.ga, [float(r["ga_weeks"]) for r in rows])


def test_one_plane_classifier_is_certain_and_embeds_with_the_ga_regressor(heads):
    cfg = load_config(DifusalConfig, None, ONE)
    f = load_split(heads, "train", ("head",), 16, fill_plane="head")
    ga = train_ga(f, 0, cfg.downstream, seed=0)
    net = one_plane(ga)
    p = plane_probs(net, f.x)
    assert p.shape == (len(f), 1) and np.allclose(p, 1.0)
    err, ent = plane_weakness(p, f.y, 1)
    assert err.tolist() == [0.0] and ent.tolist() == [0.0]  # no NaN from log(1)
    with torch.no_grad():
        assert torch.equal(net.features(f.x), ga.backbone.features(f.x))
    with pytest.raises(SonoshiftError, match="needs head frames with a known GA"):
        one_plane(None)


def test_ga_only_loop_runs_resumes_and_judges_by_ga_mae(heads, tmp_path):
    cfg = load_config(DifusalConfig, None, ONE)
    run = tmp_path / "run"
    all_stages = stages(cfg)
    first = run_difusal(cfg, heads, run, progress=False, max_stages=len(all_stages) - 1)  # killed before the end
    second = run_difusal(cfg, heads, run, progress=False)  # resumes: loads the saved GA nets, rebuilds the rest
    assert first + second == all_stages
    f = stage_dir(run, "regime_100", "difusal", 1)
    assert (f / "ga.safetensors").is_file() and not (f / "plane.safetensors").is_file()
    setup = stage_dir(run, "regime_100", "setup", 0)
    assert (setup / "critic_ga.safetensors").is_file() and not (setup / "critic_plane.safetensors").is_file()
    scores = pd.read_csv(f / "scores.csv")
    assert len(scores) == 8 and np.isfinite(scores["realism_knn"]).all() and (scores["critic_conf"] == 1.0).all()
    table = pd.read_csv(run / "metrics.csv")
    assert np.isfinite(table["ga_mae_days"]).all() and (table["macro_f1"] == 1.0).all()
    last = table[table["round"] == 1].set_index("arm")["ga_mae_days"]
    base, d = min(last["real"], last["classical_aug"]), last["difusal"]
    (sentence,) = config_verdict(cfg, table)
    assert f"GA MAE {d:.1f} d" in sentence and f"{base:.1f} d" in sentence
    assert ("target: lower: met" in sentence) == bool(base - d > 0)
    assert "macro-F1" not in sentence
    page = write_report(run).read_text()
    assert page.index("Verdict") < page.index("Headline") and "GA MAE" in page
    assert json.loads((stage_dir(run, "regime_100", "setup", 0) / "setup.json").read_text())


def test_demo_real_ga_stage_prepares_hc18_and_runs_the_loop(tmp_path):
    """``demo --real``'s GA loop: HC18 prepared by the stage (patient splits, GA by Hadlock from the table's HC,
    no plane column), the one-plane loop on it, a GA verdict and a report section; a second call is a no-op."""
    from test_downstream_hc18 import make_hc18

    from sonoshift.pipeline.demo_difusal import DemoDifusalConfig, report_sections, run_hc18_difusal
    from sonoshift.pipeline.stages import StageLog

    make_hc18(tmp_path / "data" / "hc18", n=40)
    over = tuple(o for o in ONE if not o.startswith(("data.planes", "data.head_plane", "data.fill_plane",
                                                     "headline", "loop.ga_edges")))
    dcfg = DemoDifusalConfig(config="configs/cpu/difusal_hc18_demo.yaml", reuse_plane_judge=False,
                             overrides=(*over, "loop.ga_edges=[5,12,40]", "generator.block_out_channels=[8,16]",
                                        "generator.attention=[false,false]"))
    log = StageLog()
    s = run_hc18_difusal(dcfg, tmp_path / "root", tmp_path / "data", log, False, False)
    data = tmp_path / "root" / "hc18_prepared"
    table = pd.read_csv(tmp_path / "data" / "hc18" / "included_subset.csv").set_index("filename")
    rows = [r for sp in ("train", "val", "test") for r in _rows(data, sp)]
    assert len(rows) == 40 and all(not r.get("plane") for r in rows)
    for r in rows:  # GA by Hadlock from the official HC (weeks = 8.96 + 0.540 HC + 0.0003 HC^3, HC in cm)
        hc_cm = table.loc[f"{r['video_id']}.png", "head circumference (mm)"] / 10
        assert float(r["ga_weeks"]) == pytest.approx(8.96 + 0.540 * hc_cm + 0.0003 * hc_cm**3, abs=1e-3)
    split_patients = [{r["patient_id"] for r in _rows(data, sp)} for sp in ("train", "val", "test")]
    assert not (split_patients[0] & split_patients[2]) and not (split_patients[1] & split_patients[2])
    assert s["verdict"][0].startswith("regime_100: DiFUSAL GA MAE")
    first, _ = report_sections(s, kind="hc18")
    assert "HC18" in first.title and "GA MAE" in first.caption
    again = StageLog()
    run_hc18_difusal(dcfg, tmp_path / "root", tmp_path / "data", again, False, False)
    assert again.entries and all(e["status"] == "reused" for e in again.entries.values())
