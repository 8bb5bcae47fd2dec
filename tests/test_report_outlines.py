"""Segmentation outlines in the report grid and caller-supplied extra report sections."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries

from fake_runs import make_dataset, make_run
from sonoshift.errors import SonoshiftError
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.report import ExtraSection, ReportConfig, make_report
from sonoshift.report.grid import GT_COLOR, LABEL_COLORS, PRED_COLORS, grid_content, pick_frames
from sonoshift.report.outlines import draw_outlines
from sonoshift.report.load import load_runs


def _where(rgb: np.ndarray, color: np.ndarray) -> np.ndarray:
    return np.all(np.isclose(rgb, color), axis=2)


def _ring(mask: np.ndarray) -> np.ndarray:
    """Pixels 8-adjacent to ``mask`` but not in it, by explicit shifts (independent of scipy's dilation)."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    near = np.zeros_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return near & ~mask


def _up(a: np.ndarray, s: int) -> np.ndarray:
    """Nearest upsampling by an independent route (Kronecker product with a block of ones)."""
    return np.kron(a, np.ones((s, s), dtype=a.dtype))


def test_prediction_outlines_lie_exactly_on_the_mask_boundaries() -> None:
    gray = np.full((10, 12), 90, np.uint8)
    pred = np.zeros((10, 12), np.uint8)
    pred[2:6, 2:6] = 1
    pred[7:9, 7:11] = 3
    rgb = draw_outlines(gray, None, pred, scale=3)
    assert rgb.shape == (30, 36, 3)
    for k in (1, 3):
        expected = find_boundaries(_up((pred == k).astype(np.uint8), 3), mode="outer")
        np.testing.assert_array_equal(_where(rgb, PRED_COLORS[k - 1]), expected)
    lines = _where(rgb, PRED_COLORS[0]) | _where(rgb, PRED_COLORS[2])
    halo = _ring(lines)
    assert np.allclose(rgb[halo], 0.0)  # a dark halo around every line
    assert np.allclose(rgb[~(lines | halo)], 90 / 255)
    assert np.allclose(draw_outlines(gray, None, pred, scale=3, halo=False)[~lines], 90 / 255)


def test_truth_and_prediction_outlines_do_not_hide_each_other() -> None:
    """Same region in both maps: the truth on its inner edge (one colour), the prediction just outside it."""
    gray = np.full((12, 12), 40, np.uint8)
    labels = np.zeros((12, 12), np.uint8)
    labels[3:9, 3:9] = 2
    rgb = draw_outlines(gray, labels, labels.copy(), scale=2, label_color=GT_COLOR)
    region = _up((labels == 2).astype(np.uint8), 2)
    np.testing.assert_array_equal(_where(rgb, GT_COLOR), find_boundaries(region, mode="inner"))
    np.testing.assert_array_equal(_where(rgb, PRED_COLORS[1]), find_boundaries(region, mode="outer"))
    # without label_color the truth keeps its class colour, and a map of another size is resized to the frame
    small = draw_outlines(gray, labels[::2, ::2].repeat(2, 0).repeat(2, 1)[:6, :6], None)
    assert small.shape == (12, 12, 3) and _where(small, LABEL_COLORS[1]).any()


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict]:
    """Two evaluated fake runs with a hand-made segmentation.csv and predicted masks."""
    root = tmp_path_factory.mktemp("segrep")
    ds = root / "ds"
    rows = make_dataset(ds, n=2)
    runs = [make_run(root / "a", ds, rows, "ddgan", "t", lambda s, g, i: g),
            make_run(root / "b", ds, rows, "cyclegan", "c", lambda s, g, i: s)]  # fmt: skip
    preds: dict = {}
    for k, run in enumerate(runs):
        evaluate_run(run, EvaluateConfig(modes=("target",), lpips="none"), progress=False)
        recs = []
        for i, r in enumerate(rows):
            for v, variant in enumerate(("source", "harmonized", "ground_truth")):
                mask = np.zeros((32, 32), np.uint8)
                mask[4 + v + k : 12 + i, 6 : 14 + v] = 1  # a different box per run, frame and variant
                mask[20:26, 3 + 2 * v : 9 + 2 * v] = 2
                rel = f"segmentation_masks/{variant}/{r['patient_id']}/v0/{i:05d}.png"
                (run / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(run / rel)
                preds[(k, i, variant)] = mask
                recs.append({"method": run.name, "variant": variant, "patient_id": r["patient_id"], "video_id": "v0",
                             "frame_index": i, "pred_path": rel, "dice_mean": 0.5 + 0.1 * v + 0.01 * i,
                             "hd95_mean": 1.0, "dice_fetal_head": 0.5, "dice_placenta": 0.5})  # fmt: skip
        pd.DataFrame(recs).to_csv(run / "segmentation.csv", index=False)
    return runs, preds


def test_grid_panels_carry_each_runs_predictions(seg_runs: tuple[list[Path], dict]) -> None:
    run_dirs, preds = seg_runs
    runs = load_runs(run_dirs)
    frames = pick_frames(runs, 4)
    c = grid_content(runs, frames, overlays=True, panel_px=96)  # 32 px frames -> x3
    assert c.titles[0] == "Source" and c.titles[-2:] == ["Target (paired)", "Ground truth"]
    assert c.classes == ["fetal_head", "placenta"] and c.saw_labels
    for i, row in enumerate(c.panels):
        # columns: source (run a's source prediction), run a, run b, paired target (none), ground truth (run a)
        expected = [preds[(0, i, "source")], preds[(0, i, "harmonized")], preds[(1, i, "harmonized")], None,
                    preds[(0, i, "ground_truth")]]  # fmt: skip
        for (img, caption), mask in zip(row, expected):
            assert img is not None and img.shape == (96, 96, 3)
            if mask is None:
                assert not any(_where(img, col).any() for col in PRED_COLORS) and caption == ""
                continue
            for k in (1, 2):
                edge = find_boundaries(_up((mask == k).astype(np.uint8), 3), mode="outer")
                np.testing.assert_array_equal(_where(img, PRED_COLORS[k - 1]), edge)
            assert _where(img, GT_COLOR).any()  # the label map, in the single ground-truth colour
        assert row[0][1] == f"Dice {0.5 + 0.01 * i:.2f}" and row[4][1] == f"Dice {0.7 + 0.01 * i:.2f}"
        assert row[1][1].startswith("SSIM") and row[1][1].endswith(f"Dice {0.6 + 0.01 * i:.2f}")
    plain = grid_content(runs, frames, overlays=False, panel_px=32)
    assert plain.classes is None and plain.panels[0][0][0].shape == (32, 32, 3)


def test_report_grid_is_upsampled_with_a_legend_note(seg_runs: tuple[list[Path], dict], tmp_path: Path) -> None:
    out = make_report(seg_runs[0], tmp_path / "rep", ReportConfig(grid_frames=2, violins=False, grid_panel_px=128))
    with Image.open(out / "grid.png") as im:
        w, h = im.size
    assert w >= 5 * 128 and h >= 2 * 128  # five columns of 128-px panels (32-px frames upsampled x4)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "Sky-blue outlines" in html and "predicted classes" in html


def test_extra_sections_appear_with_image_and_table(seg_runs: tuple[list[Path], dict], tmp_path: Path) -> None:
    fig = tmp_path / "fig.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(fig)
    table = pd.DataFrame({"machine": ["Aloka", "E6 <x>"], "images": [3, 4], "ellipse_iou": [0.912345, float("nan")]})
    section = ExtraSection("Fetal heads & more", images=(fig,), caption="Yellow: mask <edge>.", table=table)
    out = make_report(seg_runs[0][:1], tmp_path / "rep", ReportConfig(grid_frames=0, violins=False),
                      extra_sections=[section])  # fmt: skip
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "<h2>Fetal heads &amp; more</h2>" in html and "Yellow: mask &lt;edge&gt;." in html
    assert base64.b64encode(fig.read_bytes()).decode("ascii") in html  # the figure, inlined unchanged
    assert "<td>0.9123</td>" in html and "<td>–</td>" in html and "E6 &lt;x&gt;" in html and "<th>images</th>" in html
    assert html.index("Fetal heads") > html.index("Downstream segmentation")
    assert next((out / "sections").glob("*_fetal_heads_more_0.png")).read_bytes() == fig.read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(next((out / "sections").glob("*_fetal_heads_more.csv"))), table)


def test_extra_section_with_a_missing_image_names_it(seg_runs: tuple[list[Path], dict], tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(SonoshiftError, match=f"image {missing} does not exist"):
        make_report(seg_runs[0][:1], tmp_path / "rep", extra_sections=[ExtraSection("Heads", images=(missing,))])
    assert not (tmp_path / "rep").exists()
    bad = tmp_path / "a.gif"
    shutil.copyfile(seg_runs[0][0] / "outputs.csv", bad)
    with pytest.raises(SonoshiftError, match="not a PNG or JPEG"):
        make_report(seg_runs[0][:1], tmp_path / "rep", extra_sections=[ExtraSection("Heads", images=(bad,))])


def test_predictions_match_frames_by_id_keeping_leading_zeros(seg_runs: tuple[list[Path], dict], tmp_path: Path) -> None:
    from sonoshift.report.grid import Predictions
    from sonoshift.report.load import load_run

    run = tmp_path / "run"
    shutil.copytree(seg_runs[0][0], run)
    seg = pd.read_csv(run / "segmentation.csv")
    seg["patient_id"] = ["007" if p == "p0" else "7" for p in seg["patient_id"]]  # "007" and "7" are two patients
    seg["frame_index"] = [3.0] * len(seg)
    seg.to_csv(run / "segmentation.csv", index=False)
    preds = Predictions(load_run(run))
    mask, caption = preds.get("harmonized", {"patient_id": "007", "video_id": "v0", "frame_index": "3"})
    np.testing.assert_array_equal(mask, seg_runs[1][(0, 0, "harmonized")])
    assert caption == "Dice 0.60"
    other, _ = preds.get("harmonized", {"patient_id": "7", "video_id": "v0", "frame_index": "3"})
    np.testing.assert_array_equal(other, seg_runs[1][(0, 1, "harmonized")])
    assert preds.get("source", {"patient_id": "007", "video_id": "v0", "frame_index": "4"}) == (None, "")
