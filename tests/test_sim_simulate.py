"""The simulator end to end: folder contract, determinism, ground truth, label alignment, domain gap, overlay."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from sonoshift.errors import SonoshiftError
from sonoshift.sim import overlay
from sonoshift.sim import simulate as sim_module
from sonoshift.sim.planes import PLANES
from sonoshift.sim.profiles import load_profile
from sonoshift.sim.render import FrameKey
from sonoshift.sim.simulate import (
    SimConfig,
    make_views,
    patient_phantom,
    render_sweep,
    resolve_profiles,
    scatterer_bank,
    simulate,
)
from sonoshift.sim.tissues import ECHO, LABEL, LABEL_NAMES
from sonoshift.io.video import read_video

SMALL = SimConfig(patients=3, sweeps=("tr-mid", "sag-mid"), frames_per_sweep=4, size=96, seed=11)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "out", SMALL, progress=False)


def _spec(root: Path) -> dict:
    return yaml.safe_load((root / "sonoshift_spec.yaml").read_text())


def test_output_folder_follows_the_dataset_spec_contract(sim_dir: Path) -> None:
    spec = _spec(sim_dir)
    items = spec["items"]
    assert spec["paired"] is True
    assert len(items) == SMALL.patients * len(SMALL.sweeps) * 2
    T, S = SMALL.frames_per_sweep, SMALL.size
    for it in items:
        assert it["domain"] in ("handheld", "cart")
        assert it["video_id"] == f"{it['patient_id']}_{it['labels']['sweep']}"
        assert 18 <= it["labels"]["ga_weeks"] <= 38
        video = read_video(sim_dir / it["path"])[0]
        assert video.shape == (T, S, S)
        other = "cart" if it["domain"] == "handheld" else "handheld"
        assert set(it["aligned"]) == {"label_map", f"gt_{other}"}
        for name, rel in it["aligned"].items():
            stack = np.load(sim_dir / rel)
            assert stack.dtype == np.uint8 and stack.shape == (T, S, S), name
        with open(sim_dir / it["frame_labels"]) as f:
            rows = list(csv.DictReader(f))
        assert [int(r["frame_index"]) for r in rows] == list(range(T))
        assert all(r["plane"] in PLANES for r in rows)
    # The same video id in both domains, so the pipeline can pair frames across profiles.
    ids = {d: sorted(it["video_id"] for it in items if it["domain"] == d) for d in ("handheld", "cart")}
    assert ids["handheld"] == ids["cart"]
    with open(sim_dir / "metadata.csv") as f:
        meta = list(csv.DictReader(f))
    assert len(meta) == len(items) * T
    assert {"patient_id", "profile", "sweep", "frame_index", "ga_weeks", "plane", "video_path",
            "label_map_path", "gt_cart_path", "gt_handheld_path"} <= set(meta[0])
    labels = json.loads((sim_dir / "labels.json").read_text())
    assert [labels["classes"][str(i)] for i in range(len(LABEL_NAMES))] == list(LABEL_NAMES)
    sheet = cv2.imread(str(sim_dir / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] == 4 * S  # 2 profiles x (frames row + labels row)


def test_prepare_accepts_the_output_unchanged(sim_dir: Path, tmp_path: Path) -> None:
    prepare_mod = pytest.importorskip("sonoshift.data.prepare")
    from sonoshift.config import load_config

    cfg = load_config(prepare_mod.PrepareConfig, overrides=["resize.size=64"])
    res = prepare_mod.prepare([sim_dir], tmp_path / "prep", cfg, progress=False)
    with open(res.out / "manifest_train.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"label_path", "gt_cart_path", "gt_handheld_path"} <= set(rows[0])
    row = next(r for r in rows if r["domain"] == "handheld")
    assert row["gt_cart_path"] and (res.out / row["label_path"]).is_file()


def test_video_frames_match_the_rendered_frames(sim_dir: Path) -> None:
    """The MP4 (lossy H.264) holds the fan image: inside the fan it is within a few grey levels of the GT
    rendering of its own profile in its own geometry (re-rendered here)."""
    profiles = resolve_profiles(SMALL)
    views = make_views(profiles, SMALL.size)
    renders = render_sweep(SMALL, patient_phantom(SMALL, 0), 0, 0, profiles, views, scatterer_bank(SMALL))
    video = read_video(sim_dir / "videos" / "P0001_tr-mid_cart.mp4")[0].astype(np.float64)
    mask = views["cart"].mask
    err = np.abs(video[:, mask] - renders["cart"].frames[:, mask].astype(np.float64))
    assert err.mean() < 3.0
    label_map = np.load(sim_dir / "aligned/label_map/P0001_tr-mid_cart.npy")
    np.testing.assert_array_equal(label_map, renders["cart"].label_map)
    np.testing.assert_array_equal(np.load(sim_dir / "aligned/gt_handheld/P0001_tr-mid_cart.npy"),
                                  renders["cart"].gts["handheld"])


def test_same_seed_gives_the_same_data_and_patients_differ(sim_dir: Path, tmp_path: Path) -> None:
    again = simulate(tmp_path / "again", dataclasses.replace(SMALL, contact_sheet=False), progress=False)
    for rel in ["aligned/label_map/P0002_sag-mid_handheld.npy", "aligned/gt_cart/P0002_sag-mid_handheld.npy"]:
        np.testing.assert_array_equal(np.load(sim_dir / rel), np.load(again / rel))
    np.testing.assert_array_equal(read_video(sim_dir / "videos/P0001_tr-mid_handheld.mp4")[0],
                                  read_video(again / "videos/P0001_tr-mid_handheld.mp4")[0])
    planes_csv = "planes/P0001_tr-mid_cart.csv"
    assert (sim_dir / planes_csv).read_text() == (again / planes_csv).read_text()
    a = np.load(sim_dir / "aligned/label_map/P0001_tr-mid_handheld.npy")
    b = np.load(sim_dir / "aligned/label_map/P0002_tr-mid_handheld.npy")
    assert (a != b).mean() > 0.05
    ga = {it["patient_id"]: it["labels"]["ga_weeks"] for it in _spec(sim_dir)["items"]}
    assert ga["P0001"] != ga["P0002"]
    other_seed = patient_phantom(dataclasses.replace(SMALL, seed=12), 0)
    assert other_seed.ga_weeks != patient_phantom(SMALL, 0).ga_weeks


def test_rendering_the_target_in_its_own_geometry_equals_the_ground_truth() -> None:
    """A cart-chain profile that shares the handheld geometry: its own video frames must equal the handheld
    video's cart-chain ground truth exactly (same slice, scatterers and noise stream)."""
    hh, cart = load_profile("handheld"), load_profile("cart")
    twin = dataclasses.replace(cart, name="carttwin", geometry=hh.geometry)
    cfg = dataclasses.replace(SMALL, size=64, frames_per_sweep=3, extra_profiles=(twin,))
    profiles = resolve_profiles(cfg)
    renders = render_sweep(cfg, patient_phantom(cfg, 0), 0, 1, profiles, make_views(profiles, cfg.size),
                           scatterer_bank(cfg))
    np.testing.assert_array_equal(renders["handheld"].gts["carttwin"], renders["carttwin"].frames)
    np.testing.assert_array_equal(renders["carttwin"].gts["handheld"], renders["handheld"].frames)
    # The cart in its own (different) geometry sees another fan, so it is not the same image.
    assert renders["cart"].frames.shape == renders["carttwin"].frames.shape
    assert not np.array_equal(renders["cart"].frames, renders["carttwin"].frames)


@pytest.fixture(scope="module")
def head_sweep():
    cfg = dataclasses.replace(SMALL, patients=1, size=128, frames_per_sweep=6, seed=3)
    profiles = resolve_profiles(cfg)
    views = make_views(profiles, cfg.size)
    phantom = patient_phantom(cfg, 0)
    return cfg, profiles, views, phantom, render_sweep(cfg, phantom, 0, 0, profiles, views, scatterer_bank(cfg))


def test_label_maps_align_with_the_images(head_sweep) -> None:
    cfg, profiles, views, _, renders = head_sweep
    for p in profiles:
        res, view = renders[p.name], views[p.name]
        # The label map covers exactly the fan.
        assert np.array_equal(res.label_map[0] > 0, view.mask)
        # Brightness follows the labels' echogenicity best without any shift.
        expected = np.log(ECHO[res.label_map].astype(np.float64) + 1e-3)
        img = res.frames.astype(np.float64)
        inner = cv2.erode(view.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)

        def corr(dy: int, dx: int) -> float:
            shifted = np.roll(expected, (dy, dx), axis=(1, 2))
            return float(np.corrcoef(img[:, inner].ravel(), shifted[:, inner].ravel())[0, 1])

        c0 = corr(0, 0)
        assert c0 > 0.3
        assert all(c0 > corr(dy, dx) for dy, dx in [(3, 0), (-3, 0), (0, 3), (0, -3)])
        fluid = res.label_map == LABEL["amniotic_fluid"]
        soft = np.isin(res.label_map, [LABEL["fetal_soft_tissue"], LABEL["maternal_wall"], LABEL["placenta"]])
        assert img[fluid].mean() < img[soft].mean() - 30


def _bc(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya coefficient of two 256-bin intensity histograms (values in 0..255)."""
    p = np.bincount(a.ravel(), minlength=256) / a.size
    q = np.bincount(b.ravel(), minlength=256) / b.size
    return float(np.sum(np.sqrt(p * q)))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1.0 / mse))


def domain_gap(renders, views, source: str, target: str, render_again) -> dict[str, float]:
    """BC(source, target GT) on the same slices, PSNR(source, target GT), PSNR(target GT, fresh-noise rerender)."""
    mask = views[source].mask
    src = renders[source].frames[:, mask]
    gt = renders[source].gts[target][:, mask]
    again = render_again[:, mask]
    return {"bc": _bc(src, gt), "psnr_source_gt": _psnr(src, gt), "psnr_gt_fresh": _psnr(gt, again)}


def test_domain_gap_is_real_and_measured(head_sweep) -> None:
    from sonoshift.sim.chain import render
    from sonoshift.sim.render import slice_view
    from sonoshift.sim.sweeps import sweep_planes

    cfg, profiles, views, phantom, renders = head_sweep
    by_name = {p.name: p for p in profiles}
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0, 1]))
    planes = sweep_planes(phantom, cfg.sweeps[0], cfg.frames_per_sweep, rng)
    keys = rng.integers(0, 2**62, size=cfg.frames_per_sweep)
    bank = scatterer_bank(cfg)
    for source, target in [("handheld", "cart"), ("cart", "handheld")]:
        view = views[source]
        fresh = []
        for k, plane in enumerate(planes):
            sl = slice_view(phantom, plane, view, bank, int(keys[k]), cfg.scatterer_spacing_cm)
            # Check we rebuilt the same slice, then render the target chain with fresh noise.
            assert np.array_equal(sl.label_map, renders[source].label_map[k])
            fresh.append(render(sl.labels, sl.z, sl.u, view, by_name[target], np.random.default_rng(1000 + k), sl.tex))
        gap = domain_gap(renders, views, source, target, np.stack(fresh))
        assert gap["bc"] < 0.9, gap
        assert gap["psnr_source_gt"] < gap["psnr_gt_fresh"] - 5.0, gap


def test_overlay_sits_in_the_margins_and_only_clock_and_counter_change() -> None:
    p = load_profile("handheld")
    view = make_views([p], 128)["handheld"]
    forbidden = overlay.keep_out(view)
    static = overlay.static_layer(view, p, "P0001")
    fan = np.full((128, 128), 120, np.uint8) * view.mask
    frames = np.stack([overlay.burn_in(fan, [static, overlay.dynamic_layer(view, p, k, 10, 3600.0 + k / 10)],
                                       forbidden) for k in range(10)])
    outside = ~view.mask
    assert (frames[:, outside] > 0).any(axis=0).sum() > 150  # text, logo and depth scale are drawn
    assert (frames[:, forbidden & outside] == 0).all()  # never within GAP pixels of the fan
    changing = (frames != frames[:1]).any(axis=0)
    assert changing.sum() > 20 and not (changing & forbidden).any()
    n, comp = cv2.connectedComponents(changing.astype(np.uint8))
    assert max(np.sum(comp == i) for i in range(1, n)) < 0.05 * view.mask.sum()


def test_bad_inputs_raise_one_sentence_and_leave_nothing(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(SonoshiftError, match="nosuch"):
        simulate(tmp_path / "a", dataclasses.replace(SMALL, profiles=("handheld", "nosuch")), progress=False)
    with pytest.raises(SonoshiftError, match="size"):
        simulate(tmp_path / "a", dataclasses.replace(SMALL, size=33), progress=False)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\ngeometry: {depth_cm: -3}\n")
    with pytest.raises(SonoshiftError, match="bad.yaml"):
        load_profile(bad_yaml)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sim_module, "write_mp4", boom)
    with pytest.raises(OSError):
        simulate(tmp_path / "b", dataclasses.replace(SMALL, patients=1, frames_per_sweep=1), progress=False)
    assert list(tmp_path.iterdir()) == [bad_yaml]


def test_cli_reports_a_bad_profile_and_exits_1(tmp_path: Path, capsys) -> None:
    from sonoshift.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--out", str(tmp_path / "o"), "--patients", "1", "--profiles", "handheld,nosuch"])
    assert exc.value.code == 1
    assert "nosuch" in capsys.readouterr().err


def test_frame_key_noise_streams_are_per_profile() -> None:
    k = FrameKey(1, 2, 3, 4)
    a = k.noise_rng("cart").random(4)
    assert np.array_equal(a, FrameKey(1, 2, 3, 4).noise_rng("cart").random(4))
    assert not np.array_equal(a, k.noise_rng("handheld").random(4))
    assert not np.array_equal(a, FrameKey(1, 2, 3, 5).noise_rng("cart").random(4))
