"""`sonoshift harmonize --samples K` on files and cine-loops: the mean of K samples as output, and the per-pixel
std of the K samples mapped back through the same geometry as the frames (0 outside the field of view)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_ddgan_method import SIZE, TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)
from test_harmonize import cine
from typer.testing import CliRunner

from sonoshift.cli.main import app, main
from sonoshift.config import load_config
from sonoshift.data.crop import apply_crop, crop_from_mask, find_fov
from sonoshift.data.readers import read_stack
from sonoshift.data.resize import ResizeConfig, placement, resize_stack
from sonoshift.errors import SonoshiftError
from sonoshift.inference.harmonize import harmonize_inputs
from sonoshift.io.video import write_mp4
from sonoshift.methods import load_translator
from sonoshift.methods.ddgan import DDGANConfig, train_ddgan
from sonoshift.inference.translate import Geometry, from_prepared, harmonize_stack, to_signed

K = 3
H, W = 40, 48


@pytest.fixture(scope="module")
def ddgan_model(tiny_run) -> Path:  # noqa: F811
    """A DDGAN (16 px, 2 diffusion steps) trained for one step on the tiny dataset."""
    out = tiny_run["root"] / "dd_samples"
    if not out.exists():
        cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "train.max_steps=1"])
        train_ddgan(tiny_run["data"], cfg, out, progress=False)
    return out


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert img is not None, path
    return img


def _by_hand_back(prepared: np.ndarray, crop, size: int) -> np.ndarray:
    """Prepared (T, S, S) -> cropped (T, h, w) written out with cv2: placed region, resize, 0 outside the mask."""
    h, w = crop.mask.shape
    p = placement(h, w, ResizeConfig(size=size))
    interp = cv2.INTER_LINEAR if (h >= p.nh and w >= p.nw) else cv2.INTER_AREA
    out = np.stack([cv2.resize(np.ascontiguousarray(f[p.y : p.y + p.nh, p.x : p.x + p.nw]), (w, h),
                               interpolation=interp) for f in prepared])
    return out * crop.mask


def test_from_prepared_exact_at_scale_one_and_paste_back_background() -> None:
    full = np.zeros((H, W), bool)
    full[5:37, 8:40] = True  # a 32 x 32 box: the prepared square of size 32 is the crop itself (scale 1)
    full[5:9, 8:12] = False  # a notch, outside the field of view
    crop = crop_from_mask(full)
    rng = np.random.default_rng(0)
    prepared = rng.integers(1, 256, (2, 32, 32), dtype=np.uint8)
    back = from_prepared(prepared, crop, ResizeConfig(size=32))
    assert back.shape == (2, 32, 32) and back.dtype == np.uint8
    assert np.array_equal(back, prepared * crop.mask)  # scale 1: values unchanged inside, 0 outside
    pasted = from_prepared(prepared, crop, ResizeConfig(size=32), paste_back=True)
    assert pasted.shape == (2, H, W) and not pasted[:, ~full].any()  # no background: 0 outside the field of view
    assert np.array_equal(pasted[:, 5:37, 8:40], back)
    bg = rng.integers(0, 256, (2, H, W), dtype=np.uint8)
    onto = from_prepared(prepared, crop, ResizeConfig(size=32), paste_back=True, background=bg)
    assert np.array_equal(onto[:, ~full], bg[:, ~full]) and np.array_equal(onto[:, full], pasted[:, full])
    assert bg is not onto and not np.shares_memory(bg, onto)
    # a crop wider than tall is letterboxed: the padding rows of the prepared square never reach the output
    wide = np.zeros((H, W), bool)
    wide[10:26, 0:32] = True
    crop2 = crop_from_mask(wide)
    pad = np.full((1, 32, 32), 200, np.uint8)
    p = placement(16, 32, ResizeConfig(size=32))
    pad[:, : p.y] = pad[:, p.y + p.nh :] = 7
    assert np.array_equal(from_prepared(pad, crop2, ResizeConfig(size=32)), np.full((1, 16, 32), 200, np.uint8))


def test_stack_with_samples_matches_independent_mean_and_std(ddgan_model: Path) -> None:
    tr = load_translator(ddgan_model)
    assert tr.image_size == (SIZE, SIZE)
    frames = cine(t=2, h=H, w=W)
    geo = Geometry(resize=ResizeConfig(size=SIZE))  # the checkpoint's geometry: prepared square = model size
    res = harmonize_stack(frames, load_translator(ddgan_model), geo, samples=K, batch_size=8)  # fresh: seed 0

    # independent path: crop + resize as `prepare`, K sequential samples from one seed-0 generator, numpy stats
    crop = find_fov(frames)
    fov = resize_stack(crop.mask.astype(np.uint8) * 255, ResizeConfig(size=SIZE), nearest=True) > 0
    prep = resize_stack(apply_crop(frames, crop), ResizeConfig(size=SIZE)) * fov
    g = torch.Generator().manual_seed(0)
    draws = np.stack([tr(to_signed(prep), generator=g)[:, 0].numpy() for _ in range(K)]).astype(np.float64)
    mean_u8 = (np.round((np.clip(draws.mean(0), -1, 1) + 1) * 127.5) * fov).astype(np.uint8)
    std_u8 = (np.round(draws.std(0) * 127.5) * fov).astype(np.uint8)
    assert np.abs(res.prepared.astype(int) - mean_u8).max() <= 1
    assert std_u8.max() > 0  # the samples differ: z and posterior noise
    exp_frames, exp_unc = _by_hand_back(mean_u8, crop, SIZE), _by_hand_back(std_u8, crop, SIZE)
    assert res.frames.shape == res.uncertainty.shape == exp_frames.shape == (2,) + crop.mask.shape
    assert res.uncertainty.dtype == np.uint8
    assert np.abs(res.frames.astype(int) - exp_frames).max() <= 1
    assert np.abs(res.uncertainty.astype(int) - exp_unc).max() <= 1
    assert not res.uncertainty[:, ~crop.mask].any() and res.uncertainty[:, crop.mask].max() > 0

    # pasted back: the same maps in the original geometry, 0 (not the original pixels) outside the field of view
    pasted = harmonize_stack(frames, load_translator(ddgan_model), geo, samples=K, batch_size=8, paste_back=True)
    assert pasted.frames.shape == pasted.uncertainty.shape == frames.shape
    out = ~crop.full_mask
    assert np.array_equal(pasted.frames[:, out], frames[:, out]) and not pasted.uncertainty[:, out].any()
    y0, y1, x0, x1 = crop.bbox
    assert np.array_equal(pasted.uncertainty[:, y0:y1, x0:x1], res.uncertainty)

    # a prepared square (24) larger than the model (16): the std goes model size -> prepared square like the mean
    big = harmonize_stack(frames, load_translator(ddgan_model), Geometry(resize=ResizeConfig(size=24)), samples=K,
                          batch_size=8)
    fov24 = resize_stack(crop.mask.astype(np.uint8) * 255, ResizeConfig(size=24), nearest=True) > 0
    prep24 = resize_stack(apply_crop(frames, crop), ResizeConfig(size=24)) * fov24
    x16 = torch.nn.functional.interpolate(to_signed(prep24), size=(SIZE, SIZE), mode="bilinear",
                                          align_corners=False, antialias=True)
    g = torch.Generator().manual_seed(0)
    d16 = torch.stack([tr(x16, generator=g) for _ in range(K)])
    std24 = torch.nn.functional.interpolate(d16.std(0, correction=0), size=(24, 24), mode="bilinear",
                                            align_corners=False)[:, 0].numpy()
    std24_u8 = (np.round(std24 * 127.5) * fov24).astype(np.uint8)
    assert big.uncertainty.shape == big.frames.shape == (2,) + crop.mask.shape
    assert np.abs(big.uncertainty.astype(int) - _by_hand_back(std24_u8, crop, 24)).max() <= 1
    assert not big.uncertainty[:, ~crop.mask].any()

    # K = 1: one sample per frame (the translator's default seed), no uncertainty — the path without --samples
    one = harmonize_stack(frames, load_translator(ddgan_model), geo, batch_size=8)
    ref = (np.round((load_translator(ddgan_model)(to_signed(prep))[:, 0].clamp(-1, 1).numpy() + 1) * 127.5) * fov).astype(np.uint8)
    assert one.uncertainty is None and np.array_equal(one.prepared, ref)
    assert np.array_equal(one.frames, _by_hand_back(ref, crop, SIZE))
    # the same seed gives the same maps; an explicit generator is honoured
    again = harmonize_stack(frames, load_translator(ddgan_model), geo, samples=K, batch_size=8)
    assert np.array_equal(again.uncertainty, res.uncertainty) and np.array_equal(again.frames, res.frames)
    other = harmonize_stack(frames, tr, geo, samples=K, batch_size=8, generator=torch.Generator().manual_seed(9))
    assert not np.array_equal(other.uncertainty, res.uncertainty)


def test_inputs_image_and_npy_stack_write_uncertainty_like_the_outputs(ddgan_model: Path, tmp_path: Path) -> None:
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), cine(t=1, h=H, w=W, seed=1)[0])
    stack = cine(t=4, h=H, w=W, seed=2)
    npy = tmp_path / "sweep.npy"
    np.save(npy, stack)
    out = tmp_path / "out"
    written = harmonize_inputs(ddgan_model, [img, npy], out, frames=True, paste_back=True, batch_size=4,
                               progress=False, samples=K)
    u = out / "uncertainty"
    assert written == [out / "frame.png", out / "frame", u / "frame.png", u / "frame",
                       out / "sweep.mp4", out / "sweep", u / "sweep.mp4", u / "sweep"]
    # the files hold exactly what harmonize_stack computes (checked against an independent path above), with one
    # translator whose noise stream continues from input to input, as in harmonize_inputs
    tr = load_translator(ddgan_model)
    geo = Geometry(resize=ResizeConfig(size=SIZE))
    for name, frames in (("frame", cine(t=1, h=H, w=W, seed=1)), ("sweep", stack)):
        res = harmonize_stack(frames, tr, geo, samples=K, batch_size=4, paste_back=True)
        pngs = sorted((u / name).glob("*.png"))
        unc = np.stack([_read_png(p) for p in pngs])
        outs = np.stack([_read_png(p) for p in sorted((out / name).glob("*.png"))])
        assert unc.shape == outs.shape == frames.shape
        assert np.array_equal(unc, res.uncertainty) and np.array_equal(outs, res.frames)
        assert not unc[:, ~res.crop.full_mask].any() and unc.max() > 0
    assert np.array_equal(_read_png(u / "frame.png"), _read_png(u / "frame" / "00000.png"))
    video, uvideo = read_stack(out / "sweep.mp4"), read_stack(u / "sweep.mp4")
    assert uvideo.frames.shape == video.frames.shape == stack.shape
    assert uvideo.fps == pytest.approx(video.fps) == pytest.approx(25.0)  # a .npy has no rate: the default
    assert np.abs(uvideo.frames.astype(int) - unc).mean() < 2  # near-lossless H.264 of the PNG frames
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]

    # K = 1: the outputs of the path without --samples, and no uncertainty folder
    one = harmonize_inputs(ddgan_model, [img], tmp_path / "one", progress=False)
    assert one == [tmp_path / "one" / "frame.png"] and not (tmp_path / "one" / "uncertainty").exists()
    ref = harmonize_stack(cine(t=1, h=H, w=W, seed=1), load_translator(ddgan_model), geo, batch_size=8)
    assert np.array_equal(_read_png(one[0]), ref.frames[0])
    with pytest.raises(SonoshiftError, match="uncertainty"):
        named = tmp_path / "uncertainty.npy"
        np.save(named, stack)
        harmonize_inputs(ddgan_model, [named], tmp_path / "clash", frames=True, progress=False, samples=2)


def test_cli_samples_on_a_cine_loop_and_on_a_deterministic_model(ddgan_model: Path, tiny_run, tmp_path: Path,  # noqa: F811
                                                                 capsys) -> None:
    clip = tmp_path / "clip.mp4"
    write_mp4(clip, cine(t=3, h=H, w=W), fps=12.5)
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["harmonize", str(clip), "--model", str(ddgan_model), "--out", str(out),
                                   "--samples", "2", "--frames", "-q"])
    assert res.exit_code == 0, res.output
    assert str(out / "uncertainty" / "clip.mp4") in res.output.splitlines()
    video, uvideo = read_stack(out / "clip.mp4"), read_stack(out / "uncertainty" / "clip.mp4")
    assert uvideo.frames.shape == video.frames.shape and uvideo.fps == pytest.approx(12.5)
    assert len(list((out / "uncertainty" / "clip").glob("*.png"))) == 3
    assert "grey levels" in CliRunner().invoke(app, ["harmonize", "--help"]).output

    # a deterministic model: exit status 1, one sentence naming the problem, nothing written
    bad = CliRunner().invoke(app, ["harmonize", str(clip), "--model", str(tiny_run["cg"]), "--out",
                                   str(tmp_path / "cg"), "--samples", "3", "-q"])
    assert bad.exit_code == 1 and isinstance(bad.exception, SonoshiftError)
    assert "deterministic" in str(bad.exception) and str(bad.exception).count(". ") == 0
    with pytest.raises(SystemExit) as e:
        main(["harmonize", str(clip), "--model", str(tiny_run["cg"]), "--out", str(tmp_path / "cg"), "--samples", "3",
              "-q"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --samples needs a stochastic model")
    assert not (tmp_path / "cg").exists()
