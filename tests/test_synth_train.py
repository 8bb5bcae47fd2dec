"""Synthesizer data, training through the engine (exact resume), pipeline determinism, guidance, outputs."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synth_data import assert_same_weights, make_prepared
from sonoshift.cli.main import app
from sonoshift.config import load_config
from sonoshift.data.datasets import FrameDataset
from sonoshift.errors import SonoshiftError
from sonoshift.methods import load_translator
from sonoshift.synth import load_synthesizer
from sonoshift.synth.config import SynthConfig, SynthData
from sonoshift.synth.dataset import SynthDataset
from sonoshift.synth.train import train_synth
from sonoshift.synth.write import SynthesisRequest, parse_ga, synthesize

TINY = ["data.size=16", "model.block_out_channels=[8,16]", "model.attention=[false,true]",
        "model.attention_head_dim=8", "model.norm_num_groups=4", "train.batch_size=4", "train.device=cpu",
        "train.precision=fp32", "train.ema_decay=0.9", "train.checkpoint_every=2", "train.log_every=1",
        "train.image_every=0", "train.tensorboard=false", "train.lr=1e-3", "diffusion.steps=3"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    return {
        "sim": make_prepared(root / "sim", name="sim", patients=6),
        "hc18": make_prepared(root / "hc", name="hc18", domains=("hc18",), patients=4, with_plane=False),
        "planes": make_prepared(root / "pl", name="planes", domains=("Aloka",), patients=4, with_ga=False),
        "root": root,
    }


@pytest.fixture(scope="module")
def run(sets: dict[str, Path]) -> Path:
    out = sets["root"] / "run"
    cfg = load_config(SynthConfig, None, [*TINY, "train.max_steps=4"])
    train_synth([sets["sim"], sets["hc18"], sets["planes"]], cfg, out, progress=False)
    return out


def test_combined_sets_labels_and_vocab(sets: dict[str, Path]) -> None:
    ds = SynthDataset(SynthData(paths=(str(sets["sim"]), str(sets["hc18"]), str(sets["planes"])), size=16))
    # head -> brain by the default aliases; HC18 frames get plane brain by fill_plane; scanners are the domains.
    assert ds.vocab.planes == ("abdomen", "brain")
    assert ds.vocab.scanners == ("Aloka", "cart", "handheld", "hc18")
    by = {}
    for r, (p, ga, s) in zip(ds.rows, ds.labels):
        by.setdefault(r["scanner"], []).append((p, ga, s))
    assert all(p == 2 and math.isfinite(ga) for p, ga, _ in by["hc18"])           # brain, GA known
    assert all(math.isnan(ga) and p in (1, 2) for p, ga, _ in by["Aloka"])        # plane known, no GA
    assert {s for _, _, s in by["cart"]} == {2}
    item = ds[0]
    assert item["image"].shape == (1, 16, 16) and item["image"].min() >= -1 and item["image"].max() <= 1


def test_balanced_epochs_draw_planes_equally(tmp_path: Path) -> None:
    # 2 planes x 3 frames: make abdomen rare by dropping its label from a second, plane-less dataset's view.
    data = make_prepared(tmp_path / "d", patients=6)
    ds = SynthDataset(SynthData(paths=(str(data),), size=16), seed=0, balance=True)
    keep = [j for j, (p, _, _) in enumerate(ds.labels) if p == 2 or j % 6 == 0]   # brain all, abdomen 1 in 6
    ds.rows = [ds.rows[j] for j in keep]
    ds.labels = [ds.labels[j] for j in keep]
    ratio = sum(p == 1 for p, _, _ in ds.labels) / len(ds.labels)
    assert ratio < 0.2
    drawn = []
    for e in range(40):
        ds.set_epoch(e)
        drawn += [int(ds[i]["plane"]) for i in range(len(ds))]
    share = np.mean(np.asarray(drawn) == 1)
    assert abs(share - 0.5) < 0.06            # 40 epochs x ~28 draws: binomial std ~0.015
    ds.set_epoch(3)
    first = ds.order.copy()
    ds.set_epoch(3)
    assert np.array_equal(first, ds.order)     # the same epoch draws the same frames


def test_exact_resume_and_registry(sets: dict[str, Path], tmp_path: Path) -> None:
    data = [sets["sim"], sets["planes"]]
    cfg = load_config(SynthConfig, None, [*TINY, "train.max_steps=4"])
    train_synth(data, cfg, tmp_path / "straight", progress=False)
    train_synth(data, load_config(SynthConfig, None, [*TINY, "train.max_steps=2"]), tmp_path / "resumed",
                progress=False)
    train_synth(data, cfg, tmp_path / "resumed", resume=True, progress=False)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed", 4)
    with pytest.raises(SonoshiftError, match="synthesizer"):
        load_translator(tmp_path / "straight")


def test_loss_goes_down(sets: dict[str, Path], tmp_path: Path) -> None:
    import json

    cfg = load_config(SynthConfig, None, [*TINY, "train.max_steps=40", "train.checkpoint_every=0",
                                           "train.ema_decay=0"])
    train_synth([sets["sim"]], cfg, tmp_path / "r", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "r/log.jsonl").read_text().splitlines()]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_same_seed_same_samples_and_guidance(run: Path) -> None:
    pipe = load_synthesizer(run)
    assert pipe.planes == ("abdomen", "brain") and pipe.image_size == (16, 16) and pipe.size == 16
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = pipe(plane="brain", ga=24.0, n=3, generator=g(7))
    b = pipe(plane="brain", ga=24.0, n=3, generator=g(7))
    c = pipe(plane="brain", ga=24.0, n=3, generator=g(8))
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b) and not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    # One generator per image: image i does not depend on the other images of the batch.
    gens = [g(100 + i) for i in range(3)]
    batch = pipe(plane=["brain", "abdomen", None], ga=[20.0, None, 30.0], n=3, generator=gens, batch_size=3)
    alone = pipe(plane="abdomen", ga=None, n=1, generator=[g(101)])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-5, atol=1e-5)
    # Guidance 0 is the unconditional model: the same as sampling with every condition unknown.
    u0 = pipe(plane="brain", ga=30.0, scanner="cart", n=2, generator=g(3), guidance=0.0)
    u1 = pipe(plane=None, ga=None, n=2, generator=g(3), guidance=1.0)
    torch.testing.assert_close(u0, u1, rtol=1e-4, atol=1e-4)
    for sampler in ("ddpm", "ddim", "unipc", "dpmpp"):
        x = pipe(plane="brain", n=1, generator=g(1), sampler=sampler, steps=3)
        assert torch.isfinite(x).all()
    with pytest.raises(SonoshiftError, match="plane 'femur'"):
        pipe(plane="femur", n=1)
    # The tensor form (index k = planes[k - 1]) gives the same images as the names.
    by_index = pipe({"plane": torch.tensor([2, 2, 2]), "ga": torch.full((3,), 24.0)}, generator=g(7))
    torch.testing.assert_close(by_index, a, rtol=0, atol=0)


def test_guidance_split_by_condition(run: Path) -> None:
    pipe = load_synthesizer(run)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    kw = dict(plane="brain", scanner="cart", n=2)
    # The three-branch form with GA's scale equal to the joint scale is the joint form (continuity at w_ga = w).
    joint = pipe(ga=30.0, generator=g(4), guidance=3.0, **kw)
    split = pipe(ga=30.0, generator=g(4), guidance=3.0, ga_guidance=3.0 + 1e-6, **kw)
    torch.testing.assert_close(split, joint, rtol=1e-4, atol=1e-4)
    # w = 1, w_ga = 0: the GA term vanishes, leaving the plane + scanner model with GA unknown.
    no_ga = pipe(ga=30.0, generator=g(5), guidance=1.0, ga_guidance=0.0, **kw)
    torch.testing.assert_close(no_ga, pipe(ga=None, generator=g(5), guidance=1.0, **kw), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(no_ga, pipe(ga=30.0, generator=g(5), guidance=1.0, **kw), atol=1e-3)


def test_synthesize_writes_a_prepared_dataset(run: Path, tmp_path: Path) -> None:
    pipe = load_synthesizer(run)
    out = synthesize(pipe, tmp_path / "syn", SynthesisRequest(plane="brain", ga="20:30", n=5, scanner="cart",
                                                              seed=11, batch_size=2), progress=False)
    ds = FrameDataset(out, "train")
    assert len(ds) == 5 and ds.planes == ["brain"]
    rows = ds.rows
    assert [float(r["ga_weeks"]) for r in rows] == [20.0, 22.5, 25.0, 27.5, 30.0]
    assert {r["synthetic"] for r in rows} == {"1"} and {r["scanner"] for r in rows} == {"cart"}
    assert all(r["data_hash"] == pipe.metadata["data_hash"] and len(r["data_hash"]) == 16 for r in rows)
    assert [int(r["seed"]) for r in rows] == [11, 12, 13, 14, 15]
    # Image 3 remade alone from its seed equals the written PNG (up to 8-bit rounding).
    x = pipe(plane="brain", ga=27.5, scanner="cart", n=1, generator=[torch.Generator().manual_seed(14)])
    png = cv2.imread(str(out / rows[3]["path"]), cv2.IMREAD_UNCHANGED).astype(np.float32)
    assert np.abs(png - ((x[0, 0].numpy() + 1) * 127.5)).max() <= 1.0
    torch.testing.assert_close(ds[3]["image"], torch.from_numpy(png / 127.5 - 1)[None], rtol=0, atol=1e-6)
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape[0] > 2 * 16 and sheet.shape[1] > 6 * 32
    with pytest.raises(SonoshiftError, match="plane 'thorax'"):
        synthesize(pipe, tmp_path / "bad", SynthesisRequest(plane="thorax", n=2), progress=False)
    assert not (tmp_path / "bad").exists()


def test_an_old_manifest_with_a_non_numeric_ga_is_one_sentence(tmp_path: Path) -> None:
    import re

    from sonoshift.data.manifests import read_manifest, write_manifest

    data = make_prepared(tmp_path / "d", domains=("cart",), patients=3)
    man = data / "manifest_train.csv"
    rows = read_manifest(man)
    rows[0]["ga_weeks"] = "abc"  # as `prepare` wrote an unchecked spec label before it refused them
    write_manifest(man, rows)
    message = rf"manifest {re.escape(str(man))} has a ga_weeks value that is not a number \('abc'"
    with pytest.raises(SonoshiftError, match=message):
        SynthDataset(SynthData(paths=(str(data),), size=16))
    with pytest.raises(SonoshiftError, match=message):
        FrameDataset(data, "train")[0]


def test_parse_ga() -> None:
    assert parse_ga("", 2) == [None, None]
    assert parse_ga("24", 2) == [24.0, 24.0]
    assert parse_ga("20:32", 4) == [20.0, 24.0, 28.0, 32.0]
    with pytest.raises(SonoshiftError):
        parse_ga("32:20", 2)


def test_cli_train_and_synthesize(sets: dict[str, Path], tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["train", "synth", "--data", str(sets["sim"]), "-o", str(tmp_path / "run"), "-q",
                                 *TINY, "train.max_steps=2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["synthesize", "--model", str(tmp_path / "run"), "--plane", "brain", "--ga", "20:32",
                                 "--n", "3", "--guidance", "2", "--steps", "2", "--out", str(tmp_path / "syn"), "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "syn/manifest_train.csv").is_file() and (tmp_path / "syn/contact_sheet.png").is_file()
    first = next((tmp_path / "syn/frames").rglob("*.png"))
    r = CliRunner().invoke(app, ["synthesize", "--model", str(tmp_path / "run"), "--plane", "brain", "--n", "2",
                                 "--steps", "2", "--init", str(first), "--strength", "0.3", "--out",
                                 str(tmp_path / "var"), "-q"])
    assert r.exit_code == 0, r.output
    assert "init_path" in (tmp_path / "var/manifest_train.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("args, message", [
    (["--guidance", "nan"], "--guidance must be a finite number >= 0, got nan."),
    (["--guidance", "-1"], "--guidance must be a finite number >= 0, got -1.0."),
    (["--ga-guidance", "inf"], "--ga-guidance must be a finite number >= 0, got inf."),
    (["--ga", "80"], "--ga 80 lies outside the model's GA range of 16-40 weeks"),
    (["--ga", "20:41"], "--ga 20:41 lies outside the model's GA range of 16-40 weeks"),
    (["--ga", "nan"], "--ga nan lies outside the model's GA range"),
    (["--strength", "nan", "--init", "INIT"], "--strength must be in (0, 1], got nan."),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0."),
])
def test_synthesize_refuses_bad_numbers_before_sampling(run: Path, tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    init = tmp_path / "init.png"
    cv2.imwrite(str(init), np.full((16, 16), 100, np.uint8))
    args = [str(init) if a == "INIT" else a for a in args]
    r = CliRunner().invoke(app, ["synthesize", "--model", str(run), "--n", "2", "--steps", "1", *args,
                                 "--out", str(tmp_path / "syn"), "-q"])
    assert r.exit_code != 0 and isinstance(r.exception, SonoshiftError), r.output
    assert message in str(r.exception)
    assert not (tmp_path / "syn").exists()


def test_registry_build_and_tensorboard_samples(sets: dict[str, Path]) -> None:
    from torch.utils.data import default_collate

    from sonoshift.methods import get

    cfg = load_config(SynthConfig, None, [*TINY, f"data.paths=[{sets['sim']}]"])
    ds = SynthDataset(cfg.data)
    method = get("synth").build(cfg, ds, torch.device("cpu"))
    batch = default_collate([ds[i] for i in range(3)])
    out = method.sample(batch)
    assert out["synthetic"].shape == out["real"].shape == (3, 1, 16, 16)
    assert method.modules["unet"].training  # sampling for TensorBoard leaves the online net in train mode


def test_synthesize_from_real_frames(run: Path, tmp_path: Path) -> None:
    from sonoshift.judges.plane.api import read_like_training

    pipe = load_synthesizer(run)
    src = tmp_path / "real"
    src.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):  # two 'real' frames: a bright disc in a dark fan-less square, at two places
        img = np.zeros((48, 64), np.uint8)
        cv2.circle(img, (20 + 20 * k, 24), 10, 200, -1)
        img[img == 0] = rng.integers(20, 60, (img == 0).sum())
        cv2.imwrite(str(src / f"f{k}.png"), img)
    req = SynthesisRequest(plane="brain", ga="24", n=3, scanner="cart", seed=5, init=(str(src),), strength=0.4)
    out = synthesize(pipe, tmp_path / "syn", req, progress=False)
    rows = FrameDataset(out, "train").rows
    assert [Path(r["init_path"]).name for r in rows] == ["f0.png", "f1.png", "f0.png"]  # cycled over the files
    assert {float(r["strength"]) for r in rows} == {0.4}
    # image 2 remade alone: its start is f0.png in the training geometry, its noise generator seed 5 + 2
    start = torch.from_numpy(read_like_training([src / "f0.png"], pipe.size, True, False).astype(np.float32)
                             / 127.5 - 1)[:, None]
    x = pipe(plane="brain", ga=24.0, scanner="cart", n=1, generator=[torch.Generator().manual_seed(7)], init=start,
             strength=0.4)
    png = cv2.imread(str(out / rows[2]["path"]), cv2.IMREAD_UNCHANGED).astype(np.float32)
    assert np.abs(png - ((x[0, 0].numpy() + 1) * 127.5)).max() <= 1.0
    with pytest.raises(SonoshiftError, match="does not exist"):
        synthesize(pipe, tmp_path / "bad", SynthesisRequest(n=2, init=(str(tmp_path / "nope"),)), progress=False)
    with pytest.raises(SonoshiftError, match="--strength"):
        synthesize(pipe, tmp_path / "bad", SynthesisRequest(n=2, init=(str(src),), strength=0.0), progress=False)
    assert not (tmp_path / "bad").exists()
