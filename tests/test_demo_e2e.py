"""End to end: the whole demo pipeline on a tiny simulated dataset, then a second run that reuses every stage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sonoshift.cli.main import main
from sonoshift.pipeline.demo import DemoConfig, run_demo
from sonoshift.pipeline.demo_difusal import DemoDifusalConfig
from sonoshift.pipeline.judges import JudgesConfig
from sonoshift.pipeline.study import StudyConfig

TINY = DemoConfig(
    patients=6,
    frames_per_sweep=3,
    sim_size=80,
    workers=1,
    steps_segmenter=3,
    task_critic=True,  # the option's stages and files are checked below
    study=StudyConfig(size=32, steps={"cyclegan": 3, "ddgan": 3, "cascade": 3}, batch_size=16),
    judges=JudgesConfig(plane_image_size=32, steps_plane=10),
    # the synthesis half's loop shrunk to seconds (the demo's config otherwise)
    difusal=DemoDifusalConfig(overrides=(
        "data.size=16", "loop.rounds=1", "loop.budget=9", "downstream.steps=6", "downstream.ga_steps=6",
        "generator.block_out_channels=[8,16]", "generator.attention=[false,false]", "generator.pretrain_steps=4",
        "generator.finetune_steps=2", "generator.sample_steps=2", "generator.probe=2", "generator.batch_size=4")),
)


def test_demo_end_to_end_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    summary = run_demo(out, TINY, progress=False)
    report = Path(summary["report"])
    assert report.name == "index.html" and report.is_file()
    html = report.read_text(encoding="utf-8")
    for method in ("cyclegan", "ddgan", "cascade"):
        assert method in html
    assert "Downstream segmentation" in html and "data:image/png;base64," in html
    # every reference mode was scored for every method, with one row per test frame and mode
    for method in ("untranslated", "cyclegan", "ddgan", "cascade"):
        run = out / "harmonized" / method
        outputs = list(csv.DictReader((run / "outputs.csv").open()))
        rows = list(csv.DictReader((run / "metrics.csv").open()))
        assert outputs and {r["reference"] for r in rows} == {"target", "source", "gt"}
        assert len(rows) == 3 * len(outputs)
        assert all(-1.0 <= float(r["ssim"]) <= 1.0 and 0.0 <= float(r["bc"]) <= 1.0 for r in rows)
        assert (run / "segmentation.csv").is_file()
    _check_judges(out, html)
    _check_critic(out)
    # the reference a harmonizer should beat: the plane judge re-normalized on unlabelled handheld training frames
    ref = summary["judge_adapted_reference"]
    assert ref["adapted_on_frames"] > 0 and ref["raw"] == pytest.approx(
        {k: summary["judges"]["untranslated"]["source"][k] for k in ("plane_accuracy", "plane_macro_f1")})
    assert "Plane judge: harmonizers against re-normalizing the judge" in html
    # the synthesis half: the DiFUSAL loop ran on the prepared data with the demo's plane judge as its critic,
    # and the report gives its verdict
    loop = summary["difusal"]
    assert loop["plane_critic"] == str(out / "models" / "plane_classifier")
    assert {r["arm"] for r in loop["headline"]} == {"real", "classical_aug", "unfiltered", "difusal"}
    assert "DiFUSAL loop (smoke run)" in html and "Verdict (smoke measurement, see below): regime_100: DiFUSAL macro-F1" in html
    assert (out / "difusal" / "report.html").is_file()
    table = (out / "report" / "table.md").read_text(encoding="utf-8")
    assert "| cyclegan |" in table and "| cascade |" in table and "| untranslated |" in table
    # the baseline run is the source frames themselves: identical to its source inside the field of view
    base = [r for r in csv.DictReader((out / "harmonized" / "untranslated" / "metrics.csv").open())]
    assert all(float(r["mae"]) == 0.0 for r in base if r["reference"] == "source")
    assert all(e["status"] == "ran" for e in summary["stages"].values())

    again = run_demo(out, TINY, progress=False)
    statuses = {k: v["status"] for k, v in again["stages"].items()}
    assert statuses.pop("report") == "ran"  # the report is always rewritten
    assert set(statuses.values()) == {"reused"}
    assert json.loads((out / "summary.json").read_text())["report"] == summary["report"]
    _check_shared_seed(tmp_path, out)


def _check_shared_seed(tmp_path: Path, first: Path) -> None:
    """Another translator seed with ``shared``: the first folder's data, segmenter and plane judge are used as
    they are (not copied, not retrained); only the translators train again, and they differ from the first's."""
    import dataclasses

    import numpy as np
    from PIL import Image

    seg_file = next((first / "models" / "segmenter").rglob("*.safetensors"))
    before = seg_file.stat().st_mtime_ns
    cfg = dataclasses.replace(TINY, study=dataclasses.replace(TINY.study, train_seed=1))
    out = tmp_path / "seed_1"
    summary = run_demo(out, cfg, progress=False, shared=first)
    status = {k: v["status"] for k, v in summary["stages"].items()}
    for stage in ("simulate", "prepare", "train segmenter", "train critic segmenter", "train plane classifier"):
        assert status[stage] == "reused", stage
    assert status["train cyclegan"] == status["train ddgan"] == "ran"
    assert not (out / "data").exists() and not (out / "models" / "segmenter").exists()
    assert seg_file.stat().st_mtime_ns == before
    assert summary["paths"]["prepared data"] == str(first / "data")
    # the same test frames, translated by translators of another seed
    a, b = (_rows(f / "harmonized" / "cyclegan" / "outputs.csv") for f in (first, out))
    assert [r["source_path"] for r in a] == [r["source_path"] for r in b]
    img = lambda root, r: np.asarray(Image.open(root / "harmonized" / "cyclegan" / r["output_path"]), dtype=float)  # noqa: E731
    assert max(np.abs(img(first, ra) - img(out, rb)).max() for ra, rb in zip(a, b)) > 0


def _check_critic(out: Path) -> None:
    """The diffusion translators chose their output gamma with a second target-domain segmenter (the next seed of
    the judge's recipe, not the judge); the CycleGAN takes none."""
    from safetensors.torch import load_file

    from sonoshift.engine.checkpoint import read_model
    from sonoshift.methods import load_translator

    judge, critic = (load_file(out / "models" / d / "model.safetensors") for d in ("segmenter", "critic_segmenter"))
    assert judge.keys() == critic.keys() and any((judge[k] != critic[k]).any() for k in judge)
    for method in ("ddgan", "cascade"):
        rows = _rows(out / "models" / method / "output_gamma.csv")
        chosen = [float(r["gamma"]) for r in rows if r["chosen"] == "1"]
        assert len(rows) == 7 and len(chosen) == 1
        meta = read_model(out / "models" / method).state["metadata"]
        assert meta["output_gamma"] == chosen[0] == load_translator(out / "models" / method).output_gamma
        assert meta["output_gamma_choice"]["critic"] == str((out / "models" / "critic_segmenter").resolve())
    assert not (out / "models" / "cyclegan" / "output_gamma.csv").exists()


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def _check_judges(out: Path, html: str) -> None:
    """Every run was judged by the frozen plane classifier and GA estimator: one row per test frame and variant,
    the truth from the manifest, the same source / ground-truth predictions in every run."""
    import numpy as np
    import pandas as pd
    import torch

    from sonoshift import methods

    manifest = {r["path"]: r for r in csv.DictReader((out / "data" / "manifest_test.csv").open())}
    judge = methods.load_model(out / "models" / "plane_classifier", kind="judge")
    source_preds = []
    for method in ("untranslated", "cyclegan", "cascade"):
        run = out / "harmonized" / method
        outputs = pd.read_csv(run / "outputs.csv", dtype=str)
        planes = pd.read_csv(run / "planes.csv", dtype={"patient_id": str})
        assert sorted(planes["variant"].unique()) == ["ground_truth", "harmonized", "source"]
        assert (planes.groupby("variant").size() == len(outputs)).all()
        assert (planes["correct"] == (planes["pred"] == planes["truth"]).astype(int)).all()
        truth = [manifest[p]["plane"] for p in outputs["source_path"]]
        src = planes[planes["variant"] == "source"]
        assert list(src["truth"]) == truth
        source_preds.append(list(src["pred"]))
        # the registry's judge on the same source frames gives the same predictions
        from PIL import Image

        x = torch.tensor(np.stack([np.asarray(Image.open(out / "data" / p)) for p in outputs["source_path"]]))
        probs = judge(x.float().div(127.5).sub(1)[:, None])
        assert [judge.classes[i] for i in probs.argmax(1)] == list(src["pred"])
        ga = pd.read_csv(run / "ga.csv")
        heads = sum(t == "head" for t in truth)
        assert heads and (ga.groupby("variant").size() == heads).all()
        found = ga[ga["head_found"] == 1]
        np.testing.assert_allclose(found["ga_abs_error_days"], (found["ga_hadlock_weeks"] - found["ga_weeks"]).abs() * 7)
        assert ga[ga["head_found"] == 0]["ga_abs_error_days"].isna().all()
    assert source_preds[0] == source_preds[1] == source_preds[2]
    assert "Downstream plane classification and gestational age" in html and "Plane macro-F1" in html


def test_demo_bad_override_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["demo", "-o", str(tmp_path / "d"), "study.sizee=3"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and err.startswith("error: unknown config key 'study.sizee'") and "\n" not in err
    assert not (tmp_path / "d").exists()


def test_real_run_needs_the_shared_data(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["demo", "--real", "--data-root", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and "fetal_planes_db" in err and "--data-root" in err
    assert not (tmp_path / "r").exists()  # the run folder is made only once the data root is found


@pytest.mark.parametrize("args", [["--real", "fpdb_split=[0.5,0.5,0.5]"], ["split_fractions=[0.9,0.2,0.1]"],
                                  ["--real", "fpdb_split=[0.0,0.5,0.5]"]])
def test_a_wrong_split_is_refused_before_the_run_folder_exists(
    args: list[str], capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["demo", "-o", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    key = args[-1].split("=")[0]
    assert e.value.code == 1 and err.startswith(f"error: config key '{key}'") and "sum" in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # it used to fail in the first prepare stage, leaving an empty folder


@pytest.mark.slow
def test_real_demo_end_to_end_on_the_shared_data(shared_data: Path, tmp_path: Path) -> None:
    """`sonoshift demo --real` with tiny budgets (the synthesis loops off): both studies, the heads, HC18 and the
    Spain -> Africa stage run and both reports are written; each study is scored on the frames it should be."""
    from sonoshift.data.manifests import read_manifest
    from sonoshift.judges.plane.african import african_part
    from sonoshift.pipeline.real import RealConfig, run_real
    from sonoshift.pipeline.spain_africa import SpainAfricaConfig

    cfg = RealConfig(
        data_root=str(shared_data), steps_hc18=2, steps_hc18_ga=2, steps_hc18_refiner=2,
        study=StudyConfig(size=32, steps={"cyclegan": 2, "ddgan": 2, "cascade": 2}, batch_size=8),
        spain_africa=SpainAfricaConfig(size=32, steps_cyclegan=2, steps_classifier=4),
        difusal=DemoDifusalConfig(enabled=False), difusal_ga=DemoDifusalConfig(enabled=False))
    summary = run_real(tmp_path / "real", cfg, progress=False)
    for study in ("fpdb", "african"):
        html = (tmp_path / "real" / study / "report" / "index.html").read_text(encoding="utf-8")
        assert "Verdict" in html and "cascade" in html
    # FETAL_PLANES_DB: scored on its own test split (a third of the patients); African: on the whole test part
    fpdb_test = read_manifest(tmp_path / "real" / "fpdb" / "data" / "manifest_test.csv")
    scored = list(csv.DictReader((tmp_path / "real" / "fpdb" / "harmonized" / "untranslated" / "outputs.csv").open()))
    assert len(scored) == sum(r["domain"] == cfg.fpdb_source for r in fpdb_test) > 9
    afr = list(csv.DictReader((tmp_path / "real" / "african" / "harmonized" / "untranslated" / "outputs.csv").open()))
    assert afr and {r["patient_id"] for r in afr} <= african_part("test")
    assert Path(summary["report"]).is_file()
