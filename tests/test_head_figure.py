"""The fetal-head outline figure (mask edge + fitted ellipse + ellipse IoU) and its place in the real-data report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.special import ellipe
from skimage.draw import ellipse as draw_ellipse
from skimage.segmentation import find_boundaries

from sonoshift.downstream.ellipse import EllipseFit, ellipse_mask, head_measurements
from sonoshift.downstream.head_eval import evaluate_heads_run, summarize_heads
from sonoshift.downstream.head_figure import (
    ELLIPSE_COLOR,
    MASK_COLOR,
    head_outline_figure,
    head_panel,
    read_heads_table,
)
from sonoshift.errors import SonoshiftError


def _where(rgb: np.ndarray, color: np.ndarray) -> np.ndarray:
    return np.all(np.isclose(rgb, color), axis=2)


def _blob(shape: tuple[int, int], cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    """A head-like mask: an ellipse with a bump on one side (so the fitted ellipse is not the mask itself)."""
    m = ellipse_mask(EllipseFit(cx, cy, a, b, angle), shape)
    m[int(cy) - 2 : int(cy) + 2, int(cx) : int(cx + a) + 3] = True
    return m


def _drawn_ellipse(shape: tuple[int, int], cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """An axis-aligned filled ellipse (semi-axis ``a`` along x, ``b`` along y) drawn by scikit-image."""
    m = np.zeros(shape, bool)
    m[draw_ellipse(cy, cx, b, a, shape=shape)] = True
    return m


def _radius(shape: tuple[int, int], cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """The analytic ellipse's normalized radius at every pixel centre (1 on the ellipse)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)


def test_head_panel_outlines_the_mask_and_the_ellipse_it_was_drawn_from() -> None:
    cx, cy, a, b = 27.3, 19.6, 16.0, 11.0
    gray = np.full((40, 56), 120, np.uint8)
    mask = _drawn_ellipse((40, 56), cx, cy, a, b)
    rgb, fit = head_panel(gray, mask, panel_px=56)  # same size: no resampling
    assert rgb.shape == (40, 56, 3)
    # The fitted ellipse is the analytic one (OpenCV's angle: major axis along x -> 0 or 180 degrees).
    assert (fit.cx, fit.cy) == pytest.approx((cx, cy), abs=0.3)
    assert (fit.a, fit.b) == pytest.approx((a, b), abs=0.5)
    assert min(fit.angle % 180, 180 - fit.angle % 180) < 3
    # Cyan pixels: the ring just outside the analytic ellipse, all the way round.
    cyan, yellow = _where(rgb, ELLIPSE_COLOR), _where(rgb, MASK_COLOR)
    r = _radius(mask.shape, cx, cy, a, b)
    assert r[cyan].min() > 0.95 and r[cyan].max() < 1.2
    assert cyan.sum() == pytest.approx(4 * a * ellipe(1 - (b / a) ** 2), rel=0.3)  # about one pixel per unit length
    # Yellow pixels: the mask's inner edge (scikit-image), where the cyan ring does not cover it.
    np.testing.assert_array_equal(yellow, find_boundaries(mask, mode="inner") & ~cyan)
    assert np.allclose(rgb[~(cyan | yellow)], 120 / 255)
    empty, none = head_panel(gray, np.zeros_like(mask), panel_px=28)
    assert none is None and empty.shape == (20, 28, 3) and np.allclose(empty, 120 / 255)


def test_enlarged_panel_draws_the_ellipse_in_panel_coordinates() -> None:
    cx, cy, a, b = 20.3, 15.7, 12.0, 7.0
    mask = _drawn_ellipse((32, 40), cx, cy, a, b)
    rgb, fit = head_panel(np.zeros((32, 40), np.uint8), mask, panel_px=120)  # 3x: pixel i spans 3i..3i+2
    assert rgb.shape == (96, 120, 3)
    ex, ey = (cx + 0.5) * 3 - 0.5, (cy + 0.5) * 3 - 0.5  # the analytic centre in panel pixel coordinates
    assert (fit.cx, fit.cy) == pytest.approx((ex, ey), abs=0.9)
    assert (fit.a, fit.b) == pytest.approx((3 * a, 3 * b), abs=1.5)
    r = _radius((96, 120), ex, ey, 3 * a, 3 * b)
    cyan = _where(rgb, ELLIPSE_COLOR)
    assert cyan.sum() > 100 and r[cyan].min() > 0.95 and r[cyan].max() < 1.1


def _heads_table(folder: Path, name: str, rows: list[tuple[str, str, str, np.ndarray]]) -> Path:
    """Write images and masks for (group, variant, image name, mask) rows and a head_eval-like table."""
    recs = []
    for group, variant, img_name, mask in rows:
        img_rel = Path("images") / variant / f"{img_name}.png"
        pred_rel = Path(f"{name}_masks") / variant / group / f"{img_name}.png"
        for rel, arr in ((img_rel, (mask * 150 + 40).astype(np.uint8)), (pred_rel, mask.astype(np.uint8) * 255)):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / rel)
        recs.append({"image_path": img_rel.as_posix(), "group": group, "variant": variant, "name": img_name,
                     **head_measurements(mask), "pred_path": pred_rel.as_posix()})  # fmt: skip
    pd.DataFrame(recs).to_csv(folder / f"{name}.csv", index=False)
    return folder / f"{name}.csv"


@pytest.fixture()
def tables(tmp_path: Path) -> tuple[Path, list[tuple[str, Path]]]:
    orig = _heads_table(tmp_path / "heads", "fpdb_original", [
        (machine, "raw", f"P{machine[0]}{i}", _blob((30, 44), 20 + i, 14, 12 - i, 8, 10 * i))
        for machine in ("Aloka", "Voluson E6") for i in range(3)])  # fmt: skip
    runs = []
    for k, method in enumerate(("cyclegan", "ddgan")):
        rows = []
        for i in range(2):
            rows.append(("Aloka", "source", f"f{i}", _blob((24, 24), 12, 12, 8, 6, 15 * i)))
            rows.append(("Aloka", "harmonized", f"f{i}", _blob((24, 24), 11 + k, 12, 8 - k, 5, 20)))
        runs.append((method, _heads_table(tmp_path / method, "heads", rows)))
    return orig, runs


def test_head_figure_from_tiny_tables(tables: tuple[Path, list[tuple[str, Path]]], tmp_path: Path) -> None:
    orig, runs = tables
    both = head_outline_figure(tmp_path / "fig" / "both.png", orig, runs, per_machine=2, panel_px=200)
    only_a = head_outline_figure(tmp_path / "fig" / "a.png", orig, per_machine=2, panel_px=200)
    only_b = head_outline_figure(tmp_path / "fig" / "b.png", None, runs, panel_px=200)
    sizes = {}
    for p in (both, only_a, only_b):
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB")).astype(int)
            sizes[p.name] = im.size
        for color in (MASK_COLOR, ELLIPSE_COLOR):  # both outlines drawn (palette PNG: colours kept within a step)
            assert (np.abs(rgb - np.round(color * 255)).max(axis=2) <= 8).sum() > 50
    # (a) 2 machines x 2 images, (b) 2 frames x (raw + 2 methods): the combined figure stacks both blocks
    assert sizes["both.png"][1] > max(sizes["a.png"][1], sizes["b.png"][1])
    assert sizes["b.png"][0] > sizes["a.png"][0]  # three columns against two
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["a.png", "b.png", "both.png"]  # no temp left


def test_head_figure_errors_name_the_file(tables: tuple[Path, list[tuple[str, Path]]], tmp_path: Path) -> None:
    orig, _ = tables
    bad = tmp_path / "bad.csv"
    pd.read_csv(orig).drop(columns=["pred_path"]).to_csv(bad, index=False)
    with pytest.raises(SonoshiftError, match=f"head table {bad} lacks the column"):
        head_outline_figure(tmp_path / "x.png", bad)
    with pytest.raises(SonoshiftError, match="nothing to draw"):
        head_outline_figure(tmp_path / "x.png", orig, variant="cropped")
    with pytest.raises(SonoshiftError, match="does not exist"):
        head_outline_figure(tmp_path / "x.png", tmp_path / "none.csv")
    assert not (tmp_path / "x.png").exists()


def test_summary_has_a_row_per_method_and_the_report_section(
    tables: tuple[Path, list[tuple[str, Path]]], tmp_path: Path
) -> None:
    from sonoshift.pipeline.real import _heads_section

    t = pd.DataFrame({"group": ["A"] * 5, "variant": ["source", "harmonized", "harmonized", "harmonized", "raw"],
                      "method": ["", "cg", "cg", "dd", np.nan], "head_found": [True, True, False, True, True],
                      **{c: [0.2, 0.4, np.nan, 0.8, 0.1] for c in ("area_fraction", "ellipse_iou", "components",
                                                                   "hc_px", "hc_frac")}})  # fmt: skip
    s = summarize_heads(t).set_index(["variant", "method"])
    assert s.loc[("harmonized", "cg"), "images"] == 2 and s.loc[("harmonized", "cg"), "head_found_rate"] == 0.5
    assert s.loc[("harmonized", "cg"), "ellipse_iou_mean"] == pytest.approx(0.4)  # NaN skipped
    assert s.loc[("harmonized", "dd"), "hc_px_mean"] == pytest.approx(0.8) and s.loc[("raw", ""), "images"] == 1
    orig, runs = tables
    summary = tmp_path / "heads_summary.csv"
    summarize_heads(t).to_csv(summary, index=False)
    heads = {"original": str(orig), "summary": str(summary), "hc18_val_dice": 0.9,
             "runs": {"untranslated": str(runs[0][1]), **{m: str(p) for m, p in runs}}}  # fmt: skip
    section = _heads_section(heads, tmp_path / "heads" / "heads_outlines.png")
    assert section.images == (tmp_path / "heads" / "heads_outlines.png",) and section.images[0].is_file()
    assert "Dice 0.900" in section.caption and "ellipse_iou_mean" in section.table.columns
    assert "area_fraction_std" not in section.table.columns and len(section.table) == len(s)


def test_run_head_table_paths_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter
    from sonoshift.downstream.segmenter import ModelConfig, SegmenterTrainConfig
    from test_downstream_hc18 import make_hc18

    cfg = Hc18Config(data_dir=str(make_hc18(tmp_path / "hc18", n=8)), image_size=16, val_fraction=0.0,
                     model=ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0),
                     train=SegmenterTrainConfig(steps=2, batch_size=4, noise_std=0.0))  # fmt: skip
    train_hc18_segmenter(cfg, tmp_path / "seg", progress=False)
    prepared, run = tmp_path / "work" / "prepared", tmp_path / "work" / "run"
    (prepared / "frames").mkdir(parents=True)
    (run / "outputs").mkdir(parents=True)
    img = (_blob((24, 24), 12, 12, 8, 6, 0) * 200 + 20).astype(np.uint8)
    Image.fromarray(img).save(prepared / "frames" / "0.png")
    Image.fromarray(255 - img).save(run / "outputs" / "0.png")
    pd.DataFrame([{"output_path": "outputs/0.png", "source_path": "frames/0.png", "label_path": "",
                   "patient_id": "p0", "video_id": "v", "frame_index": 0}]).to_csv(run / "outputs.csv", index=False)
    (run / "run.json").write_text(json.dumps({"dataset": "../prepared", "source_domain": "Aloka"}))
    monkeypatch.chdir(tmp_path / "work")
    evaluate_heads_run(Path("run"), tmp_path / "seg", progress=False)  # a relative run folder
    monkeypatch.chdir(tmp_path)
    written = pd.read_csv(run / "heads.csv").set_index("variant")
    assert written.loc["harmonized", "image_path"] == "outputs/0.png"
    assert written.loc["source", "image_path"] == str((prepared / "frames" / "0.png").resolve())
    table = read_heads_table(run / "heads.csv")
    assert all(Path(p).is_file() for p in list(table["image_path"]) + list(table["pred_path"]))
    assert head_outline_figure(tmp_path / "f.png", None, [("m", run / "heads.csv")], panel_px=48).is_file()
