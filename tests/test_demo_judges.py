"""The demo's downstream judges (plane classifier, GA estimator) in the report, the African rule in training and
CV, and the judges in the method registry; numbers checked against hand-computed values."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fake_runs import make_dataset, make_run
from plane_data import CLASSES, make_prepared
from sonoshift import methods
from sonoshift.errors import SonoshiftError
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.judges.plane.african import without_test_part
from sonoshift.judges.plane.augment import AugmentConfig
from sonoshift.judges.plane.data import load_samples
from sonoshift.judges.plane.net import NetConfig
from sonoshift.judges.plane.train import ClassifierConfig, ClassifierTrainConfig
from sonoshift.report import ReportConfig, make_report
from sonoshift.report.downstream import judge_scores, judges_frame, macro_f1_of
from sonoshift.report.load import load_runs

TINY = ClassifierConfig(
    image_size=32, net=NetConfig(stem=8, widths=(16, 32), dropout=0.0),
    train=ClassifierTrainConfig(steps=60, batch_size=12, lr=3e-3, eval_every=20, patience=3, seed=0),
    augment=AugmentConfig(enabled=False),
)


def test_macro_f1_matches_a_hand_computed_confusion() -> None:
    # truth a a b c / pred a b b b: F1(a) = 2*1/(1+2) = 2/3, F1(b) = 2*1/(3+1) = 1/2, F1(c) = 0 -> mean 7/18
    df = pd.DataFrame({"truth": ["a", "a", "b", "c"], "pred": ["a", "b", "b", "b"]})
    assert macro_f1_of(df) == pytest.approx(7 / 18)
    # a predicted class that never occurs in the truth counts (F1 0), as in scikit-learn
    df = pd.DataFrame({"truth": ["a", "a"], "pred": ["a", "z"]})
    assert macro_f1_of(df) == pytest.approx((2 * 1 / (1 + 2) + 0) / 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("judged")
    ds = root / "ds"
    rows = make_dataset(ds, n=4)
    raw = make_run(root / "raw", ds, rows, "untranslated", "", lambda s, g, i: s)
    good = make_run(root / "good", ds, rows, "cyclegan", "cpu/cg", lambda s, g, i: g)
    for r in (raw, good):
        evaluate_run(r, EvaluateConfig(modes=("gt",), lpips="none"), progress=False)
    # the same 4 source and ground-truth frames in both runs; the harmonized rows differ
    src = (["a", "a", "b", "c"], ["a", "b", "b", "b"])  # accuracy 2/4, macro-F1 7/18 (see above)
    gt = (["a", "a", "b", "c"], ["a", "a", "b", "c"])  # perfect
    harm = {"raw": src, "good": (["a", "a", "b", "c"], ["a", "a", "b", "b"])}  # 3/4; F1 1, 2/3, 0 -> 5/9
    for run in (raw, good):
        recs = []
        for variant, (t, p) in (("source", src), ("harmonized", harm[run.name]), ("ground_truth", gt)):
            recs += [{"variant": variant, "truth": a, "pred": b, "correct": int(a == b)} for a, b in zip(t, p)]
        pd.DataFrame(recs).to_csv(run / "planes.csv", index=False)
        err = {"source": [10.0, 20.0, np.nan], "harmonized": [4.0, 6.0, 8.0] if run.name == "good" else
               [10.0, 20.0, np.nan], "ground_truth": [1.0, 3.0, 2.0]}  # fmt: skip
        pd.DataFrame([{"variant": v, "ga_abs_error_days": e, "head_found": int(not np.isnan(e))}
                      for v, es in err.items() for e in es]).to_csv(run / "ga.csv", index=False)
    return [raw, good]


def test_summary_judges_are_the_hand_computed_scores(runs: list[Path]) -> None:
    scores = {s.judge.name: s for s in judge_scores(load_runs(runs))}
    acc, f1, ga = scores["Plane accuracy"], scores["Plane macro-F1"], scores["GA error"]
    assert (acc.raw, acc.ceiling) == (pytest.approx(0.5), pytest.approx(1.0))
    assert acc.harmonized["cyclegan (cpu/cg)"] == pytest.approx(0.75)
    assert f1.raw == pytest.approx(7 / 18) and f1.ceiling == pytest.approx(1.0)
    assert f1.harmonized["cyclegan (cpu/cg)"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert ga.raw == pytest.approx(15.0) and ga.harmonized["cyclegan (cpu/cg)"] == pytest.approx(6.0)
    assert ga.ceiling == pytest.approx(2.0)
    found = scores["Head found (GA)"]  # shown next to the GA error, which counts found heads only
    assert found.raw == pytest.approx(2 / 3) and found.harmonized["cyclegan (cpu/cg)"] == pytest.approx(1.0)


def test_judges_table_in_the_report(runs: list[Path], tmp_path: Path) -> None:
    frame = judges_frame(load_runs(runs))
    row = frame[(frame["method"] == "cyclegan") & (frame["variant"] == "harmonized")].iloc[0]
    assert row["plane_n"] == 4 and row["plane_accuracy"] == pytest.approx(0.75)
    assert row["ga_n"] == 3 and row["ga_mean"] == pytest.approx(6.0) and row["ga_std"] == pytest.approx(np.std([4, 6, 8]))
    src = frame[(frame["method"] == "cyclegan") & (frame["variant"] == "source")].iloc[0]
    assert src["head_found"] == pytest.approx(2 / 3) and src["ga_mean"] == pytest.approx(15.0)
    gt = frame[(frame["method"] == "cyclegan") & (frame["variant"] == "ground_truth")].iloc[0]
    assert gt["plane_accuracy_best"] and gt["plane_macro_f1_best"] and gt["ga_mean_best"]
    out = make_report(runs, tmp_path / "rep", ReportConfig(grid_frames=0, violins=False, figure=False))
    md = (out / "table.md").read_text()
    assert "## Downstream plane classification and gestational age" in md
    assert "| cyclegan | cpu/cg | harmonized | 4 | 0.750 | 0.556 | 3 | 1.00 | 6.0 ± 1.6 |" in md
    page = (out / "index.html").read_text()
    assert "Downstream plane classification and gestational age" in page and "Plane macro-F1" in page


def test_cv_and_training_leave_the_african_test_part_out(tmp_path: Path) -> None:
    from sonoshift.judges.plane.cv import cross_validate

    data = make_prepared(tmp_path / "d", per_split=(4, 1, 1))
    rule = {"A": {"adaptation": ["A00", "A01", "A02", "A03"], "test": ["A04", "A05"]},
            "B": {"adaptation": ["B00", "B01", "B02"], "test": ["B03", "B04", "B05"]}, "seed": 0}
    s = load_samples(data, ["train", "val", "test"], 32)
    kept = without_test_part(s, "test", rule)
    assert set(kept.patients) == {"A00", "A01", "A02", "A03", "B00", "B01", "B02"} and len(kept) == 7 * 3
    cross_validate(data, tmp_path / "cv", TINY, k=3, progress=False, african=rule)
    pred = pd.read_csv(tmp_path / "cv" / "predictions.csv", dtype={"patient_id": str})
    assert set(pred["patient_id"]) == set(kept.patients)  # every adaptation frame scored once, no test frame
    assert len(pred) == len(kept)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from sonoshift.judges.plane.api import train_on_dataset

    root = tmp_path_factory.mktemp("reg")
    data = make_prepared(root / "d")
    train_on_dataset(data, root / "clf", TINY, progress=False)
    return data, root / "clf"


def test_plane_classifier_is_a_registered_judge(classifier: tuple[Path, Path]) -> None:
    from sonoshift.cli.train import MethodGroup
    from sonoshift.judges.plane.checkpoint import load_classifier
    from sonoshift.judges.plane.data import to_input
    from sonoshift.judges.plane.train import predict_proba
    from sonoshift.methods.kinds import Judge

    data, run = classifier
    judge = methods.load_model(run, kind="judge")
    assert isinstance(judge, Judge) and judge.task == "plane" and judge.classes == CLASSES
    s = load_samples(data, ["test"], 32)
    x = to_input(s.frames)
    probs = judge(x)
    ref = predict_proba(load_classifier(run).model, x)
    np.testing.assert_allclose(probs.numpy(), ref, atol=1e-5)
    accuracy = float((probs.argmax(1).numpy() == np.array([CLASSES.index(l) for l in s.labels])).mean())
    assert accuracy >= 0.8, accuracy  # the shapes are easy: a trained judge gets them
    assert judge.features(x).shape == (len(s), 32)
    assert judge(torch.nn.functional.interpolate(x, scale_factor=2)).shape == probs.shape  # any input size
    with pytest.raises(SonoshiftError, match="not a translator"):
        methods.load_translator(run)
    assert "plane_classifier" not in MethodGroup(name="train").list_commands(None)
    with pytest.raises(SonoshiftError, match="sonoshift classify train"):
        methods.train_method("plane_classifier", data, run.parent / "x")


def test_segmenter_and_ga_estimator_are_registered_judges(tmp_path: Path) -> None:
    from sonoshift.downstream.segmenter import ModelConfig, Segmenter, build_unet, predict, save_segmenter

    torch.manual_seed(0)
    model = build_unet(ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0), 2).eval()
    seg = Segmenter(model, ("background", "head"), 32, {"model": {"channels": [4, 8], "strides": [2],
                                                                  "num_res_units": 0}}, {})
    save_segmenter(seg, tmp_path / "seg")
    judge = methods.load_model(tmp_path / "seg", kind="judge")
    assert judge.task == "segmentation" and judge.classes == ("background", "head")
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 40), dtype=np.uint8)
    x = torch.from_numpy(frames).float().div(127.5).sub(1)[:, None]
    assert np.array_equal(judge(x).numpy(), np.stack(predict(seg, list(frames))))

    info = {"ga_estimator": {"offset_px": 0.0, "tta": False}}
    save_segmenter(Segmenter(model, seg.classes, 32, seg.config, info), tmp_path / "ga")
    ga = methods.load_model(tmp_path / "ga", kind="judge")
    assert ga.task == "ga"
    with pytest.raises(SonoshiftError, match="pixel size"):
        ga(x)
    weeks = ga(x, pixel_size_mm=0.5)
    assert weeks.shape == (2,)
    meta = json.loads((tmp_path / "ga" / "segmenter.json").read_text())
    assert meta["info"]["ga_estimator"]["offset_px"] == 0.0


def test_spain_africa_datasets_follow_the_african_rule(shared_data: Path) -> None:
    from sonoshift.judges.plane.african import african_part
    from sonoshift.judges.plane.cross_domain import SHARED_PLANES
    from sonoshift.pipeline.spain_africa import AFRICA, SPAIN, african_test_spec, translation_spec

    test, adapt = african_part("test"), african_part("adaptation")
    spec = translation_spec(shared_data)
    africa = [it for it in spec.items if it.domain == AFRICA]
    spain = [it for it in spec.items if it.domain == SPAIN]
    assert africa and spain and {it.domain for it in spec.items} == {AFRICA, SPAIN}
    assert {it.patient_id for it in africa} <= adapt and not {it.patient_id for it in africa} & test
    assert all("plane" not in it.labels for it in africa)  # adaptation images are used without labels
    assert {it.labels["plane"] for it in spain} == set(SHARED_PLANES)
    tspec = african_test_spec(shared_data)
    assert {it.patient_id for it in tspec.items} == test
    assert all(it.labels["plane"] in SHARED_PLANES for it in tspec.items)


def test_spain_africa_report_table_is_one_row_per_variant(tmp_path: Path) -> None:
    from sonoshift.pipeline.spain_africa import spain_africa_table

    rows = [("raw", "A", 10, 0.5, 0.4, 0.1), ("raw", "B", 6, 1.0, 1.0, 0.0), ("raw", "all", 16, 0.6875, 0.6, 0.05),
            ("adapted", "A", 10, 0.7, 0.6, 0.2), ("adapted", "B", 6, 0.5, 0.5, 0.3), ("adapted", "all", 16, 0.625,
                                                                                    0.55, 0.25)]
    pd.DataFrame(rows, columns=["variant", "domain", "n", "accuracy", "macro_f1", "ece"]).to_csv(
        tmp_path / "cd.csv", index=False)
    t = spain_africa_table(tmp_path / "cd.csv")
    assert list(t.columns) == ["variant", "n", "accuracy", "macro-F1", "ECE", "accuracy A", "accuracy B"]
    assert t["variant"].tolist() == ["raw", "adapted"]  # the file's order
    assert t.iloc[1].tolist() == ["adapted", 16, 0.625, 0.55, 0.25, 0.7, 0.5]


@pytest.mark.slow
def test_spain_africa_stage_scores_the_test_part_raw_adapted_and_harmonized(shared_data: Path, tmp_path: Path) -> None:
    from sonoshift.judges.plane.african import african_part
    from sonoshift.pipeline.spain_africa import SpainAfricaConfig, african_test_spec, run_spain_africa
    from sonoshift.pipeline.stages import StageLog

    cfg = SpainAfricaConfig(size=32, steps_cyclegan=2, steps_classifier=5)
    res = run_spain_africa(tmp_path, shared_data, cfg, log=StageLog(), force=False, progress=False)
    table = pd.read_csv(res["table"])
    assert list(table["variant"].unique()) == ["raw", "adapted", "zoomed", "adapted_zoomed", "translated",
                                               "translated_adapted_zoomed", "harmonized", "harmonized_adapted"]
    adapted = json.loads((tmp_path / "planes" / "classifier_adapted" / "classifier.json").read_text())
    assert adapted["info"]["adapted"]["source"] == "African adaptation part"  # never the test part
    trans = pd.concat([pd.read_csv(f) for f in (tmp_path / "translation").glob("manifest_*.csv")])
    assert adapted["info"]["adapted"]["frames"] == (trans["domain"] == "africa").sum()  # all adaptation images
    n_test = len(african_test_spec(shared_data).items)
    assert (table[table["domain"] == "all"]["n"] == n_test).all()
    for variant in ("harmonized", "adapted_zoomed"):
        pred = pd.read_csv(tmp_path / "planes" / variant / "predictions.csv", dtype={"patient_id": str})
        assert set(pred["patient_id"]) <= african_part("test")


def test_real_run_african_study_sees_only_the_adaptation_part(shared_data: Path) -> None:
    from sonoshift.judges.plane.african import african_part
    from sonoshift.pipeline.real import OTHER_CENTRES, RealConfig, _african_spec

    spec = _african_spec(RealConfig(), shared_data)
    pats = {it.patient_id for it in spec.items}
    assert pats and pats <= african_part("adaptation") and not pats & african_part("test")
    assert {it.domain for it in spec.items} == {OTHER_CENTRES, RealConfig().african_target}


def test_real_run_african_study_is_scored_on_the_whole_test_part(shared_data: Path, tmp_path: Path) -> None:
    from sonoshift.data.cache import load_cache
    from sonoshift.data.manifests import read_manifest
    from sonoshift.data.prepare import PrepareConfig
    from sonoshift.data.public import african_planes_spec
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.judges.plane.african import african_part
    from sonoshift.pipeline.real import OTHER_CENTRES, RealConfig, _african_test_part

    cfg = RealConfig()
    prep = PrepareConfig(resize=ResizeConfig(size=32), source_domain=OTHER_CENTRES, target_domain=cfg.african_target)
    out = Path(_african_test_part(cfg, shared_data, tmp_path / "test_part", prep, False))
    rows = read_manifest(out / "manifest_test.csv")
    assert {r["patient_id"] for r in rows} == african_part("test")  # every test-part patient, nothing else
    assert not read_manifest(out / "manifest_train.csv") and not read_manifest(out / "manifest_val.csv")
    # every test-part image of the public set is scored: the target centre's against the others pooled
    test_items = [it for it in african_planes_spec(shared_data).items if it.patient_id in african_part("test")]
    n_target = sum(it.domain == cfg.african_target for it in test_items)
    assert len(load_cache(out, "test", cfg.african_target)) == n_target > 0
    assert len(load_cache(out, "test", OTHER_CENTRES)) == len(test_items) - n_target > 0


def test_real_run_fpdb_study_scores_a_third_of_its_patients(shared_data: Path, tmp_path: Path) -> None:
    """The FETAL_PLANES_DB study's test split holds round(0.35 n) of each machine's patients (the default 15 %
    left 6 Aloka patients, 9 frames); the African study keeps the default split (it is scored on the test part)."""
    import csv

    from sonoshift.data.manifests import read_manifest
    from sonoshift.data.prepare import prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.pipeline.real import RealConfig, study_plan

    cfg = RealConfig()
    plan = {st.name: st for st in study_plan(cfg)}
    assert plan["african"].prepare.split.fractions == (0.7, 0.15, 0.15)
    fpdb = plan["fpdb"]
    source, target, make_spec, prep = fpdb.study.source, fpdb.study.target, fpdb.make_spec, fpdb.prepare
    out = prepare(make_spec(cfg, shared_data), tmp_path / "fpdb", dataclasses.replace(prep, resize=ResizeConfig(size=32)),
                  progress=False).out
    # the reference: patients per machine counted from the official table, by hand
    with open(shared_data / "fetal_planes_db" / "index.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["US_Machine"] in (source, target)]
    for machine in (source, target):
        n = len({r["Patient_num"] for r in rows if r["US_Machine"] == machine})
        test = {r["patient_id"] for r in read_manifest(out / "manifest_test.csv") if r["domain"] == machine}
        val = {r["patient_id"] for r in read_manifest(out / "manifest_val.csv") if r["domain"] == machine}
        train = {r["patient_id"] for r in read_manifest(out / "manifest_train.csv") if r["domain"] == machine}
        assert len(test) == round(0.35 * n) and len(val) == round(0.15 * n)
        assert len(train) == n - len(test) - len(val) and not (test & val or test & train or val & train)
