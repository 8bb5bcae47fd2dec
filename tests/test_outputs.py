"""The one output policy: nothing of the user's is deleted, earlier results are reused or --force-replaced,
multi-output commands are all-or-nothing, temporaries of dead processes are cleaned and live ones are not."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sonoshift.atomic import atomic_dir, atomic_file, make_temp_dir, owner_prefix, process_start, remove_stale, umask
from sonoshift.cli.main import main
from sonoshift.config import load_config, to_dict
from sonoshift.data.datasets import UnpairedDataset
from sonoshift.engine.loop import train
from sonoshift.engine.stamp import dataset_stamp
from sonoshift.errors import SonoshiftError
from sonoshift.inference.harmonize import harmonize_dataset, harmonize_inputs
from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig
from sonoshift.outputs import Stamp, all_or_nothing, claim_entries, claim_folder, file_digest, record_entries, write_stamp
from sonoshift.sim.simulate import SimConfig, simulate
from fake_runs import make_dataset, make_run
from test_harmonize import cine, make_prepared

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["model.ngf=4", "model.n_blocks=1", "model.ndf=4", "train.batch_size=2", "train.max_steps=1",
        "train.device=cpu", "train.tensorboard=false", "train.image_every=0"]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    return path


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny CycleGANs (different seeds) on a 32-px fake dataset."""
    root = tmp_path_factory.mktemp("models")
    data = root / "data"
    (data / "cache" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in ("handheld", "cart"):
        np.save(data / f"cache/train/{d}.npy", rng.integers(0, 256, (4, 32, 32), dtype=np.uint8))
    (data / "dataset.json").write_text("{}")
    out = []
    for seed in (0, 1):
        cfg = load_config(CycleGANConfig, None, [*TINY, f"train.seed={seed}"])
        method = CycleGAN(cfg, torch.device("cpu"), (32, 32))
        train(method, UnpairedDataset(data, "train", "handheld", "cart"), cfg.train, root / f"run{seed}",
              full_config=to_dict(cfg), progress=False, stamp=dataset_stamp(data))
        out.append(root / f"run{seed}")
    return out[0], out[1]


# ------------------------------------------------------------------------------------------- temporaries


def test_stale_temporaries_of_dead_processes_go_live_ones_stay(tmp_path: Path) -> None:
    me = os.getpid()
    dead = tmp_path / f".out.tmp-{dead_pid()}-123-{owner_prefix('x').split('-')[3]}-abc"
    recycled = tmp_path / f".out.tmp-{me}-{(process_start(me) or 0) + 1}-{owner_prefix('x').split('-')[3]}-abc"
    live = make_temp_dir(tmp_path / "out")
    other_host = tmp_path / f".out.tmp-{dead_pid()}-123-someotherhost-abc"
    legacy = tmp_path / ".out.tmp-k2j3h4"  # no owner: never guessed at
    user = tmp_path / ".out.tmp-notes"
    for p in (dead, recycled, other_host, legacy, user):
        p.mkdir()
    removed = remove_stale(tmp_path)
    assert sorted(removed) == sorted([dead, recycled])
    assert live.exists() and other_host.exists() and legacy.exists() and user.exists()


def test_kill_9_leftover_is_removed_by_the_next_run(tmp_path: Path) -> None:
    code = ("import os, signal; from sonoshift.atomic import atomic_dir\n"
            f"with atomic_dir({str(tmp_path / 'out')!r}) as t:\n"
            "    (t / 'big.bin').write_bytes(b'0' * 1000); os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, check=False)
    assert len(list(tmp_path.glob(".out.tmp-*"))) == 1  # what kill -9 leaves
    with atomic_dir(tmp_path / "out") as t:
        (t / "a.txt").write_text("done")
    assert not list(tmp_path.glob(".out.*")) and (tmp_path / "out" / "a.txt").read_text() == "done"


def test_checkpoint_temporary_of_a_killed_run_is_removed_on_resume(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    import shutil

    shutil.copytree(model_dirs[0], run)
    half = run / "checkpoints" / f".step_00000009.tmp-{dead_pid()}-7-{owner_prefix('x').split('-')[3]}-zz"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    data = model_dirs[0].parent / "data"
    cfg = load_config(CycleGANConfig, None, [*TINY, "train.max_steps=2"])
    method = CycleGAN(cfg, torch.device("cpu"), (32, 32))
    train(method, UnpairedDataset(data, "train", "handheld", "cart"), cfg.train, run, full_config=to_dict(cfg),
          resume=True, progress=False)
    assert not half.exists()


def test_outputs_get_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert umask() == 0o022
        with atomic_dir(tmp_path / "d") as t:
            (t / "x").write_text("1")
        with atomic_file(tmp_path / "f.bin", "wb") as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644


# --------------------------------------------------------------------------------------------- policy


def test_claim_folder_decisions(tmp_path: Path) -> None:
    assert claim_folder(tmp_path / "new", "report", "k") == "create"
    (tmp_path / "empty").mkdir()
    assert claim_folder(tmp_path / "empty", "report", "k") == "create"
    mine = tmp_path / "mine"
    mine.mkdir()
    write_stamp(mine, "report", "k")
    assert claim_folder(mine, "report", "k") == "reuse"
    assert claim_folder(mine, "report", "k", force=True) == "replace"
    with pytest.raises(SonoshiftError, match="other inputs or settings; pass --force"):
        claim_folder(mine, "report", "other")
    assert claim_folder(mine, "report", "other", force=True) == "replace"
    with pytest.raises(SonoshiftError, match="holds a sonoshift report, not a simulation"):
        claim_folder(mine, "simulation", "k", force=True)
    user = user_folder(tmp_path / "user")
    with pytest.raises(SonoshiftError, match="not written by sonoshift"):
        claim_folder(user, "report", "k", force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SonoshiftError, match="is a file"):
        claim_folder(tmp_path / "file", "report", "k", force=True)
    assert claim_folder(user, "report", "k", legacy=lambda p: Stamp("report", None), force=True) == "replace"


def test_ledger_entries(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_text("user")
    with pytest.raises(SonoshiftError, match="a.mp4 exists and was not written by sonoshift"):
        claim_entries(tmp_path, {"a.mp4": "k"}, "harmonized output", force=True)
    (tmp_path / "b.mp4").write_text("ours")
    record_entries(tmp_path, {"b.mp4": "k"}, "harmonized output")
    assert claim_entries(tmp_path, {"b.mp4": "k", "c.mp4": "k"}, "harmonized output") == {"b.mp4": "reuse",
                                                                                         "c.mp4": "create"}
    with pytest.raises(SonoshiftError, match="pass --force"):
        claim_entries(tmp_path, {"b.mp4": "other"}, "harmonized output")


def test_all_or_nothing_discards_everything_on_error(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with all_or_nothing() as batch:
            batch.path(tmp_path / "keep.txt").write_text("new")
            batch.path(tmp_path / "sub" / "x.txt").write_text("new")
            raise RuntimeError("second input failed")
    assert (tmp_path / "keep.txt").read_text() == "old" and not (tmp_path / "sub" / "x.txt").exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["keep.txt"]


# ------------------------------------------------------------------------------------------- commands


def test_report_refuses_a_user_folder_and_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = tmp_path / "ds"
    run = make_run(tmp_path / "run", ds, make_dataset(ds), "cyclegan", "cpu/cyclegan", lambda s, g, i: g)
    assert cli(["evaluate", str(run), "lpips=none", "-q"], capsys)[0] == 0
    user = user_folder(tmp_path / "user")
    code, err = cli(["report", str(run), "--out", str(user), "grid_frames=0", "violins=false"], capsys)
    assert code == 1 and "not written by sonoshift" in err and err.count("\n") == 1
    code, err = cli(["report", str(run), "--out", str(user), "--force", "grid_frames=0", "violins=false"], capsys)
    assert code == 1 and sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    f = tmp_path / "table.txt"
    f.write_text("mine")
    code, err = cli(["report", str(run), "--out", str(f), "grid_frames=0", "violins=false"], capsys)
    assert code == 1 and "is a file" in err and f.read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name or ".tmp-" in p.name]
    # its own earlier result: reused, replaced with --force, refused with other settings
    out = tmp_path / "report"
    assert cli(["report", str(run), "--out", str(out), "grid_frames=0", "violins=false"], capsys)[0] == 0
    t0 = (out / "index.html").stat().st_mtime_ns
    assert cli(["report", str(run), "--out", str(out), "grid_frames=0", "violins=false"], capsys)[0] == 0
    assert (out / "index.html").stat().st_mtime_ns == t0
    code, err = cli(["report", str(run), "--out", str(out), "grid_frames=0", "violins=true"], capsys)
    assert code == 1 and "--force" in err
    assert cli(["report", str(run), "--out", str(out), "--force", "grid_frames=0", "violins=true"], capsys)[0] == 0
    assert (out / "violins").is_dir()


def test_simulate_refuses_a_user_folder_and_reuses_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = user_folder(tmp_path / "user")
    args = ["simulate", "--patients", "1", "--profiles", "handheld,cart", "--size", "32", "--frames-per-sweep", "1",
            "--sweeps", "tr-mid", "--workers", "1", "--quiet"]
    code, err = cli([*args, "--out", str(user), "--force"], capsys)
    assert code == 1 and "not written by sonoshift" in err and (user / "notes.txt").read_text() == "mine"
    f = tmp_path / "file.txt"
    f.write_text("mine")
    assert cli([*args, "--out", str(f)], capsys)[0] == 1 and f.read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    cfg = SimConfig(patients=1, size=32, frames_per_sweep=1, sweeps=("tr-mid",), contact_sheet=False)
    out = simulate(tmp_path / "sim", cfg, progress=False)
    t0 = (out / "simulation.json").stat().st_mtime_ns
    simulate(out, cfg, progress=False)
    assert (out / "simulation.json").stat().st_mtime_ns == t0
    with pytest.raises(SonoshiftError, match="--force"):
        simulate(out, SimConfig(patients=1, size=32, frames_per_sweep=1, sweeps=("tr-mid",), contact_sheet=False,
                                seed=5), progress=False)


def test_harmonize_dataset_policy(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data")
    user = user_folder(tmp_path / "user")
    with pytest.raises(SonoshiftError, match="not written by sonoshift"):
        harmonize_dataset(model_dirs[0], data, user, force=True, progress=False)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    run = harmonize_dataset(model_dirs[0], data, tmp_path / "run", progress=False)
    t0 = (run / "outputs.csv").stat().st_mtime_ns
    harmonize_dataset(model_dirs[0], data, run, progress=False)
    assert (run / "outputs.csv").stat().st_mtime_ns == t0
    with pytest.raises(SonoshiftError, match="pass --force"):
        harmonize_dataset(model_dirs[1], data, run, progress=False)
    harmonize_dataset(model_dirs[1], data, run, progress=False, force=True)
    assert json.loads((run / "run.json").read_text())["checkpoint"].startswith(str(model_dirs[1].resolve()))


def video(tmp_path: Path, name: str = "clip.npy", t: int = 3) -> Path:
    p = tmp_path / name
    np.save(p, cine(t))
    return p


def test_harmonize_files_policy(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    cg, other = model_dirs
    clip = video(tmp_path)
    out = tmp_path / "harmonized"
    first = harmonize_inputs(cg, [clip], out, progress=False)
    assert [p.name for p in first] == ["clip.mp4"]
    t0 = (out / "clip.mp4").stat().st_mtime_ns
    harmonize_inputs(cg, [clip], out, progress=False)  # same model, input and settings: reused
    assert (out / "clip.mp4").stat().st_mtime_ns == t0
    with pytest.raises(SonoshiftError, match="other inputs or settings; pass --force"):
        harmonize_inputs(other, [clip], out, progress=False)
    assert (out / "clip.mp4").stat().st_mtime_ns == t0
    harmonize_inputs(other, [clip], out, progress=False, force=True)
    assert (out / "clip.mp4").stat().st_mtime_ns != t0
    # a file of the user's with an output's name is never replaced
    (out / "scan.mp4").write_bytes(b"user video")
    with pytest.raises(SonoshiftError, match="scan.mp4 exists and was not written by sonoshift"):
        harmonize_inputs(cg, [video(tmp_path, "scan.npy")], out, progress=False, force=True)
    assert (out / "scan.mp4").read_bytes() == b"user video"
    # an existing file as --out: one sentence, not a traceback
    with pytest.raises(SonoshiftError, match="is a file, not a folder"):
        harmonize_inputs(cg, [clip], out / "scan.mp4", progress=False)


def test_multi_input_harmonize_is_all_or_nothing(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    good = video(tmp_path, "a.npy")
    bad = tmp_path / "b.npy"
    bad.write_bytes(b"not an array")
    out = tmp_path / "new"
    with pytest.raises(SonoshiftError):
        harmonize_inputs(model_dirs[0], [good, bad], out, progress=False)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(SonoshiftError):
        harmonize_inputs(model_dirs[0], [good, bad], kept, progress=False, frames=True)
    assert list(kept.iterdir()) == []


def test_multi_run_evaluate_is_all_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = tmp_path / "ds"
    rows = make_dataset(ds)
    good = make_run(tmp_path / "good", ds, rows, "cyclegan", "cpu/cyclegan", lambda s, g, i: g)
    bad = make_run(tmp_path / "bad", ds, rows, "ddgan", "cpu/ddgan", lambda s, g, i: s)
    (bad / "outputs.csv").write_text("output_path,source_path\nmissing.png,frames/src/p0/v0/00000.png\n")
    code, err = cli(["evaluate", str(good), str(bad), "lpips=none", "-q"], capsys)
    assert code == 1 and "missing.png" in err
    assert not (good / "metrics.csv").exists() and not (good / "metrics.json").exists()
    assert not [p for p in good.iterdir() if ".tmp-" in p.name]
    # one run evaluated, then again with other settings: refused without --force, replaced with it
    assert cli(["evaluate", str(good), "lpips=none", "-q"], capsys)[0] == 0
    code, err = cli(["evaluate", str(good), "lpips=none", "use_mask=false", "-q"], capsys)
    assert code == 1 and "--force" in err
    assert cli(["evaluate", str(good), "lpips=none", "use_mask=false", "--force", "-q"], capsys)[0] == 0
    assert json.loads((good / "metrics.json").read_text())["evaluate_config"]["use_mask"] is False


def test_prepare_force_replaces_only_a_prepared_dataset(tmp_path: Path) -> None:
    from sonoshift.data.prepare import PrepareConfig, prepare
    from tests.prep_synth import make_video

    for d in ("a", "b"):
        (tmp_path / "in" / d).mkdir(parents=True)
        for p in range(4):
            np.save(tmp_path / "in" / d / f"{d}{p}.npy", make_video(3, seed=p))
    inputs = [tmp_path / "in" / "a", tmp_path / "in" / "b"]
    cfg = PrepareConfig(split=load_config(PrepareConfig, None, ["split.fractions=[0.5,0.25,0.25]"]).split)
    out = prepare(inputs, tmp_path / "out", cfg, progress=False).out
    other = load_config(PrepareConfig, None, ["split.fractions=[0.5,0.25,0.25]", "resize.size=32"])
    with pytest.raises(SonoshiftError, match="pass --force"):
        prepare(inputs, out, other, progress=False)
    assert prepare(inputs, out, other, progress=False, force=True).info["frame_size"] == [32, 32]
    user = user_folder(tmp_path / "user")
    with pytest.raises(SonoshiftError, match="not empty and holds no prepared dataset"):
        prepare(inputs, user, cfg, progress=False, force=True)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]


def test_training_into_a_users_folder_is_refused(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    data = model_dirs[0].parent / "data"
    user = user_folder(tmp_path / "user")
    (user / "config.yaml").write_text("mine: true\n")
    cfg = load_config(CycleGANConfig, None, TINY)
    with pytest.raises(SonoshiftError, match="did not write"):
        train(CycleGAN(cfg, torch.device("cpu"), (32, 32)), UnpairedDataset(data, "train", "handheld", "cart"),
              cfg.train, user, full_config=to_dict(cfg), progress=False)
    assert (user / "config.yaml").read_text() == "mine: true\n" and sorted(p.name for p in user.iterdir()) == [
        "config.yaml", "notes.txt"]


def test_segment_predict_refuses_a_users_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sonoshift.downstream.segmenter import ModelConfig, Segmenter, build_unet, save_segmenter

    seg = save_segmenter(Segmenter(model=build_unet(ModelConfig(channels=(4, 8), strides=(2,)), 2),
                                   classes=("bg", "head"), image_size=32,
                                   config={"model": {"channels": [4, 8], "strides": [2]}}, info={}), tmp_path / "seg")
    img = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(img), np.full((32, 32), 90, np.uint8))
    user = user_folder(tmp_path / "user")
    code, err = cli(["segment", "predict", str(seg), str(img), "--out", str(user), "--force"], capsys)
    assert code == 1 and "not written by sonoshift" in err and sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    assert cli(["segment", "predict", str(seg), str(img), "--out", str(tmp_path / "maps")], capsys)[0] == 0
    code, err = cli(["segment", "train", str(tmp_path), "--out", str(user)], capsys)
    assert code == 1 and "not written by sonoshift" in err


def test_file_digest_is_sha256_and_a_missing_file_is_one_sentence(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "metrics.csv"
    f.write_bytes(b"a,b\n1,2\n" * 1000)
    assert file_digest(f, chunk=7) == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(SonoshiftError, match="is missing: the folder it belongs to was changed or only partly copied"):
        file_digest(tmp_path / "gone.csv")
