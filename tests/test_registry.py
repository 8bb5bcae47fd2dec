"""The method registry: a translation method written in one file outside the package (tests/toy_method.py) is
trained, checkpointed, harmonized and evaluated through the CLI and the study pipeline, and no generic module
names a method."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import toy_method  # noqa: F401  (registers "toy_affine")
from PIL import Image
from safetensors import safe_open

import sonoshift
from sonoshift import methods
from sonoshift.cli.main import main
from sonoshift.errors import SonoshiftError
from sonoshift.runs import open_run

SRC = Path(sonoshift.__file__).parent
TINY = ["train.max_steps=8", "train.log_every=1", "train.device=cpu", "train.tensorboard=false", "train.checkpoint_every=4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated two-scanner dataset (6 patients, one sweep, 2 frames), prepared at 32 px."""
    root = tmp_path_factory.mktemp("registry")
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.sim.simulate import SimConfig, simulate

    sim = simulate(root / "sim", SimConfig(patients=6, size=64, frames_per_sweep=2, workers=1, sweeps=("tr-mid",)),
                   progress=False)
    cfg = PrepareConfig(resize=ResizeConfig(size=32), source_domain="handheld", target_domain="cart")
    return prepare([sim], root / "data", cfg, progress=False).out


def cli(*args: str) -> None:
    """Run the sonoshift CLI in this process; a non-zero exit fails the test."""
    try:
        main(list(args))
    except SystemExit as e:
        assert e.code in (0, None), f"sonoshift {' '.join(args)} exited with {e.code}"


def _weights(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """a, b of the newest checkpoint, read straight from its safetensors file."""
    latest = (run / "checkpoints" / "latest").read_text().strip()
    with safe_open(str(run / "checkpoints" / latest / "model.safetensors"), "pt") as f:
        return f.get_tensor("model/map/a").numpy()[0, 0], f.get_tensor("model/map/b").numpy()[0, 0]


def test_a_method_in_one_file_trains_harmonizes_and_evaluates_through_the_cli(data: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "toy"
    cli(*["train", "toy_affine", "--data", str(data), "--out", str(run), "-q", *TINY])
    assert "trained 8 steps" in capsys.readouterr().out
    a, b = _weights(run)
    assert not np.allclose(a, 1.0) and not np.allclose(b, 0.0)  # the L1 step moved the map
    log = [json.loads(x)["l1"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1] < log[0]

    # the engine stamped the dataset into the checkpoint, although the method's metadata() does not mention it
    state = json.loads((run / "checkpoints" / "step_00000008" / "state.json").read_text())
    meta, info = state["metadata"], json.loads((data / "dataset.json").read_text())
    assert meta["prepare"] == {"crop": info["config"]["crop"], "resize": info["config"]["resize"]}
    assert meta["data_hash"] == hashlib.sha256((data / "dataset.json").read_bytes()).hexdigest()
    assert meta["domains"] == info["domains"] and meta["image_size"] == [32, 32]

    # harmonize the test split; every output is the affine map of its source frame (numpy reference)
    out = tmp_path / "harmonized"
    cli(*["harmonize", "--model", str(run), "--dataset", str(data), "--split", "test", "--out", str(out), "-q"])
    rows = list(csv.DictReader((out / "outputs.csv").open()))
    sources = [r for r in csv.DictReader((data / "manifest_test.csv").open()) if r["domain"] == "handheld"]
    assert len(rows) == len(sources) > 0
    assert json.loads((out / "run.json").read_text())["method"] == "toy_affine"
    for r in rows[:3]:
        src = np.asarray(Image.open(data / r["source_path"]), np.float64) / 127.5 - 1
        mask = np.asarray(Image.open(data / r["mask_path"])) > 0
        want = np.round((np.clip(a * src + b, -1, 1) + 1) * 127.5)
        got = np.asarray(Image.open(out / r["output_path"]), np.float64)
        assert np.abs(got - want)[mask].max() <= 1.0 and (got[~mask] == 0).all()

    cli(*["evaluate", str(out), "lpips=none", "-q"])
    metrics = list(csv.DictReader((out / "metrics.csv").open()))
    assert {m["method"] for m in metrics} == {"toy_affine"}
    assert {m["reference"] for m in metrics} == {"target", "source", "gt"} and len(metrics) == 3 * len(rows)

    # raw cine-loops go through the crop and size the model was trained with
    clip = next((data.parent / "sim" / "videos").glob("*handheld.mp4"))
    cli(*["harmonize", str(clip), "--model", str(run), "--out", str(tmp_path / "raw"), "-q"])
    assert (tmp_path / "raw" / f"{clip.stem}.mp4").is_file()


def test_the_study_pipeline_trains_a_registered_method_it_was_never_told_about(data: Path, tmp_path: Path) -> None:
    from sonoshift.pipeline.stages import StageLog
    from sonoshift.pipeline.study import StudyConfig, run_study

    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text("train:\n  device: cpu\n  tensorboard: false\n")
    cfg = StudyConfig(size=32, methods=("toy_affine",), steps={"toy_affine": 3}, configs={"toy_affine": str(cfg_file)})
    runs = run_study(data, tmp_path / "study", cfg, log=StageLog(), force=False, progress=False)
    # the no-learning baselines are rows of every study (the blurred CycleGAN needs a CycleGAN among the methods)
    assert [r.name for r in runs] == ["untranslated", "histogram_match", "depth_affine", "toy_affine"]
    assert all((r / "metrics.csv").is_file() for r in runs)
    assert json.loads((tmp_path / "study" / "models" / "toy_affine" / "checkpoints" / "step_00000003" /
                       "state.json").read_text())["step"] == 3


def test_a_study_scores_another_prepared_folder_when_given_one(data: Path, tmp_path: Path) -> None:
    """``eval_data``: the models and baselines learn from ``data``, the harmonized and scored frames come from the
    other folder's split (the real run's African test part), with the leakage check on that folder."""
    import shutil

    from sonoshift.data.cache import load_cache
    from sonoshift.pipeline.stages import StageLog
    from sonoshift.pipeline.study import StudyConfig, run_study

    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text("train:\n  device: cpu\n  tensorboard: false\n")
    cfg = StudyConfig(size=32, methods=("toy_affine",), steps={"toy_affine": 3}, configs={"toy_affine": str(cfg_file)},
                      baselines=("histogram_match",))
    other = tmp_path / "other"
    shutil.copytree(data, other)
    runs = run_study(data, tmp_path / "study", cfg, log=StageLog(), force=False, progress=False, eval_data=other)
    for r in runs:
        run = json.loads((r / "run.json").read_text())
        assert open_run(r).dataset_root.resolve() == other.resolve() and run["dataset_absolute"] == str(other.resolve())
        n = len(load_cache(other, "test", "handheld"))
        assert len(list((r / "outputs").rglob("*.png"))) == n
    # the training split of the same folder would be leakage: refused with one sentence, nothing scored
    leaky = StudyConfig(**{**cfg.__dict__, "split": "train"})
    with pytest.raises(SonoshiftError, match="trained on"):
        run_study(data, tmp_path / "leaky", leaky, log=StageLog(), force=False, progress=False, eval_data=other)


def test_editing_a_method_config_file_retrains_it_and_redoes_its_outputs(data: Path, tmp_path: Path) -> None:
    """The study's stages are keyed on the config files' bytes, not only their paths: an edited YAML under the
    same name retrains the method (from scratch) and re-harmonizes; an untouched one is reused."""
    from sonoshift.pipeline.stages import StageLog
    from sonoshift.pipeline.study import StudyConfig, run_study

    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text("train:\n  device: cpu\n  tensorboard: false\n  log_every: 1\n")
    cfg = StudyConfig(size=32, methods=("toy_affine",), steps={"toy_affine": 3}, configs={"toy_affine": str(cfg_file)},
                      baselines=())
    root = tmp_path / "study"

    def statuses() -> dict[str, str]:
        log = StageLog()
        run_study(data, root, cfg, log=log, force=False, progress=False)
        return {k: v["status"] for k, v in log.entries.items()}

    assert set(statuses().values()) == {"ran"}

    def trained_with() -> int:
        state = root / "models" / "toy_affine" / "checkpoints" / "step_00000003" / "state.json"
        return json.loads(state.read_text())["config"]["train"]["log_every"]

    assert trained_with() == 1
    assert set(statuses().values()) == {"reused"}
    cfg_file.write_text("train:\n  device: cpu\n  tensorboard: false\n  log_every: 2\n")  # same path, new bytes
    again = statuses()
    assert again == {"train toy_affine": "ran", "harmonize + evaluate untranslated": "reused",
                     "harmonize + evaluate toy_affine": "ran"}
    assert trained_with() == 2  # the model was trained again, from the edited file
    assert set(statuses().values()) == {"reused"}


def test_default_study_comes_from_the_registry_in_dependency_order() -> None:
    names = methods.study_methods()
    assert names == ["cyclegan", "ddgan", "cascade"]
    for n in names:  # every method a study method needs is trained before it
        assert all(names.index(dep) < names.index(n) for dep in methods.get(n).needs.values())


def test_plugins_named_in_the_environment_are_trainable(tmp_path: Path) -> None:
    env = {**os.environ, "SONOSHIFT_PLUGINS": "toy_method",
           "PYTHONPATH": os.pathsep.join([str(SRC.parent), str(Path(__file__).parent)])}
    res = subprocess.run([sys.executable, "-m", "sonoshift", "train", "--help"], capture_output=True, text=True,
                         env=env)
    assert res.returncode == 0 and "toy_affine" in res.stdout and "cyclegan" in res.stdout


def test_unknown_method_is_one_sentence_naming_the_known_ones(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "nosuch", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1 and "unknown method 'nosuch'" in err[0] and "cyclegan" in err[0]


def test_registering_a_bad_kind_or_loading_the_wrong_kind_is_refused(data: Path, tmp_path: Path) -> None:
    spec = methods.get("toy_affine")
    with pytest.raises(SonoshiftError, match="unknown kind 'painter'"):
        methods.register(methods.MethodSpec(**{**spec.__dict__, "name": "bad", "kind": "painter"}))
    cli(*["train", "toy_affine", "--data", str(data), "--out", str(tmp_path / "t"), "-q", "train.max_steps=1",
          "train.device=cpu", "train.tensorboard=false"])
    with pytest.raises(SonoshiftError, match="not a synthesizer"):
        methods.load_model(tmp_path / "t", kind="synthesizer")
    with pytest.raises(SonoshiftError, match="takes no option 'reverse'"):
        methods.load_translator(tmp_path / "t", reverse=True)


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_generic_code_names_no_method() -> None:
    """The study pipeline, the CLI, inference and the report never spell a registered method's name."""
    names = {s.name for s in methods.available()}
    files = [SRC / "pipeline" / "study.py", *sorted((SRC / "cli").glob("*.py")), *sorted((SRC / "inference").glob("*.py")),
             *sorted((SRC / "report").glob("*.py")), SRC / "runs.py", SRC / "evaluate.py"]
    for f in files:
        found = names & _string_constants(f)
        assert not found, f"{f.relative_to(SRC)} names the method(s) {sorted(found)}"


def test_a_judge_is_trained_and_loaded_through_the_same_registry(data: Path, tmp_path: Path) -> None:
    import toy_judge  # noqa: F401  (registers "toy_domain", kind "judge")
    import torch

    from sonoshift.methods.kinds import Judge

    run = tmp_path / "judge"
    cli("train", "toy_domain", "--data", str(data), "--out", str(run), "-q", "train.max_steps=40",
        "train.device=cpu", "train.tensorboard=false")
    judge = methods.load_model(run, kind="judge")
    assert isinstance(judge, Judge) and judge.classes == ("handheld", "cart")
    # held-out test frames of both scanners, classified by the trained judge
    rows = list(csv.DictReader((data / "manifest_test.csv").open()))
    x = torch.tensor(np.stack([np.asarray(Image.open(data / r["path"]), np.float32) for r in rows])) / 127.5 - 1
    truth = torch.tensor([judge.classes.index(r["domain"]) for r in rows])
    accuracy = (judge(x[:, None]).argmax(1) == truth).float().mean().item()
    assert accuracy >= 0.8, accuracy
    assert "toy_domain" not in methods.study_methods()  # judges are not translators of the study
    with pytest.raises(SonoshiftError, match="is a judge .* not a translator"):
        methods.load_translator(run)
