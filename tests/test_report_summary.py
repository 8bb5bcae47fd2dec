"""The report leads with the verdict: the summary's numbers against metrics.csv read independently, verdicts for a
method that clearly beats the untranslated frames and one that clearly does not, judge rows that appear when a run
carries their file, notes said once, the page order, and the Figure-4 style figure."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fake_runs import make_dataset, make_run
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.report import ReportConfig, make_report
from sonoshift.report.figure import draw_figure, figure_content
from sonoshift.report.load import load_runs
from sonoshift.report.outlines import draw_outlines
from sonoshift.report.summary import MIXED, NO, VERDICT_RULE, YES, build_summary, summary_markdown
from sonoshift.report.table import build_tables

LOWER_IS_BETTER = {"mae", "lpips_alex", "lpips_vgg", "fid", "kid", "hd95"}


def _seg(run: Path, rows: list[dict], dice: dict[str, list[float]]) -> None:
    recs = []
    for variant, values in dice.items():
        for r, d in zip(rows, values):
            recs.append({"variant": variant, "patient_id": r["patient_id"], "video_id": "v0",
                         "frame_index": r["frame_index"], "dice_mean": d, "hd95_mean": 10 * (1 - d)})  # fmt: skip
    pd.DataFrame(recs).to_csv(run / "segmentation.csv", index=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[dict]]:
    """untranslated (the source frames), a near-perfect method and a flat-grey 'baseline' (histogram matching
    stand-in), all scored in the three reference modes, with hand-made downstream files."""
    root = tmp_path_factory.mktemp("summary")
    ds = root / "ds"
    rows = make_dataset(ds, n=4)
    flat = lambda s, g, i: np.where(g > 0, 128, 0)  # noqa: E731
    dirs = [make_run(root / "raw", ds, rows, "untranslated", "raw source frames", lambda s, g, i: s),
            make_run(root / "good", ds, rows, "ddgan", "t", lambda s, g, i: np.clip(g.astype(int) + 1, 0, 255)),
            make_run(root / "flat", ds, rows, "histmatch", "", flat)]  # fmt: skip
    for d in dirs:
        evaluate_run(d, EvaluateConfig(modes=("target", "source", "gt"), lpips="none"), progress=False)
    raw, gt = [0.4, 0.5, 0.6, 0.5], [0.9, 0.9, 0.8, 1.0]
    _seg(dirs[0], rows, {"source": raw, "harmonized": raw, "ground_truth": gt})
    _seg(dirs[1], rows, {"source": raw, "harmonized": [0.8, 0.9, 0.8, 0.9], "ground_truth": gt})
    _seg(dirs[2], rows, {"source": raw, "harmonized": [0.1, 0.0, 0.2, 0.1], "ground_truth": gt})
    # a plane judge on one run only: its row must appear anyway
    pd.DataFrame({"variant": ["raw"] * 4 + ["harmonized"] * 4, "correct": [1, 0, 0, 1, 1, 1, 1, 0]}).to_csv(
        dirs[1] / "planes.csv", index=False)  # fmt: skip
    return dirs, rows


def test_best_method_and_gain_match_metrics_csv(runs: tuple[list[Path], list[dict]]) -> None:
    dirs, _ = runs
    loaded = load_runs(dirs)
    s = build_summary(loaded, build_tables(loaded))
    frames = pd.concat([pd.read_csv(d / "metrics.csv", keep_default_na=False, na_values=["nan"]) for d in dirs])
    means = frames.groupby(["reference", "method"]).mean(numeric_only=True)
    checked = 0
    for mode in ("target", "source", "gt"):
        for metric in ("psnr", "mae", "ssim", "lncc", "bc"):
            cand = means.loc[mode][metric].drop("untranslated")
            cand = cand[np.isfinite(cand)]
            best = cand.idxmin() if metric in LOWER_IS_BETTER else cand.idxmax()
            b = s.best[(mode, metric)]
            assert [lbl.split(" ")[0] for lbl in b.labels] == [best]
            assert b.value == pytest.approx(cand[best], rel=1e-9)
            assert b.baseline == pytest.approx(means.loc[(mode, "untranslated"), metric], rel=1e-9) or mode == "source"
            checked += 1
    assert checked == 15
    assert s.best[("gt", "psnr")].gain > 10  # the near-perfect method: +1 grey level off the truth
    # dataset-level rows (FID/KID/BC from metrics_dataset.csv) come along on their own
    ds = pd.read_csv(dirs[1] / "metrics_dataset.csv")
    fid = ds[(ds["reference"] == "gt") & (ds["metric"] == "fid")]["value"].iloc[0]
    assert "fid" in s.metrics and s.best[("gt", "fid")].value == pytest.approx(fid)
    assert "4 frames per run" in s.context and "3 runs" in s.context and "src → tgt" in s.context


def test_verdicts_and_judge_rows(runs: tuple[list[Path], list[dict]]) -> None:
    dirs, _ = runs
    loaded = load_runs(dirs)
    s = build_summary(loaded, build_tables(loaded))
    by = {v.label.split(" ")[0]: v for v in s.verdicts}
    assert set(by) == {"ddgan", "histmatch"}  # every run but the untranslated one, extra baselines included
    assert by["ddgan"].word == YES and by["histmatch"].word == NO
    assert "Dice 0.50 → 0.85 (better)" in by["ddgan"].sentence
    assert "Dice 0.50 → 0.10 (worse" in by["histmatch"].sentence
    judges = {d.judge.name: d for d in s.downstream}
    assert list(judges) == ["Dice", "HD95", "Plane accuracy"]  # no ga.csv anywhere: no GA row
    assert judges["HD95"].raw == pytest.approx(5.0) and judges["HD95"].ceiling == pytest.approx(1.0)
    planes = judges["Plane accuracy"]
    assert planes.raw == pytest.approx(0.5) and list(planes.harmonized.values()) == [pytest.approx(0.75)]
    assert "Plane accuracy 0.50 → 0.75 (better)" in by["ddgan"].sentence


def test_page_leads_with_the_summary_and_says_notes_once(runs: tuple[list[Path], list[dict]], tmp_path: Path) -> None:
    dirs, _ = runs
    out = make_report(dirs, tmp_path / "rep", ReportConfig(grid_frames=2, violin_metrics=("ssim",)))
    html = (out / "index.html").read_text(encoding="utf-8")
    order = [html.index(k) for k in ('id="summary"', "Qualitative comparison", "<h2>Notes</h2>", "<h2>Tables</h2>",
                                     "<details><summary>Violin plots", "More frames (qualitative grid)")]  # fmt: skip
    assert order == sorted(order)
    assert html.count("LPIPS not computed") == 1 and html.count("inside the field-of-view mask") == 1
    summary = html[html.index('id="summary"') : html.index("</section>")]
    for text in ("ddgan", "histmatch", "beats doing nothing", "Plane accuracy", "ceiling (GT)", "vs ground truth"):
        assert text in summary
    assert "<img" not in summary  # text and tables only: it must fit the first screen
    assert (out / "figure.png").is_file() and (out / "grid.png").is_file()
    md = (out / "table.md").read_text(encoding="utf-8")
    assert md.index("## Verdict") < md.index("## Reference: target")
    assert "- **ddgan (t)** — beats doing nothing: better on" in md


def test_figure_rows_share_one_grey_scale_and_show_each_run(runs: tuple[list[Path], list[dict]]) -> None:
    dirs, rows = runs
    loaded = load_runs(dirs)
    c = figure_content(loaded, overlays=True, panel_px=64)
    assert c is not None and c.scale == 2 and c.outlines
    titles = [p.title.split("\n")[0] for p in c.panels]
    assert titles == ["Source", "ddgan", "histmatch", "Target", "Ground truth"]  # untranslated = the source column
    # the typical frame: median over frames of the runs' mean SSIM against the ground truth, read independently
    m = pd.concat([pd.read_csv(d / "metrics.csv") for d in dirs])
    m = m[m["reference"] == "gt"].groupby("frame_index")["ssim"].mean().sort_values()
    median_frame = int(m.index[(len(m) - 1) // 2])
    assert c.frame == rows[median_frame]["source_path"]
    ds = dirs[0].parent / "ds"
    src = np.asarray(Image.open(ds / c.frame))
    np.testing.assert_array_equal(c.panels[0].gray, src)
    np.testing.assert_array_equal(c.panels[4].gray, np.asarray(Image.open(ds / rows[median_frame]["gt_path"])))
    assert c.panels[3].outlined is None and all(p.outlined is not None for i, p in enumerate(c.panels) if i != 3)
    fig = draw_figure(c)
    plain = [ax.images[0] for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 2]
    assert len(plain) == len(c.panels) and all(im.get_clim() == (0, 255) for im in plain)


def test_long_column_titles_stay_inside_the_figure(runs: tuple[list[Path], list[dict]]) -> None:
    dirs, _ = runs
    c = figure_content(load_runs(dirs), overlays=True, panel_px=64)
    long = "a row-wise linear grey map fitted inside the field of view on the training split of both domains"
    c.panels[1] = dataclasses.replace(c.panels[1], title=f"depth_affine\n{long}")
    fig = draw_figure(c)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    fig_box = fig.bbox
    for ax in fig.axes[:-1]:
        box = ax.title.get_window_extent(renderer)
        if ax.get_title():
            assert fig_box.y0 <= box.y0 and box.y1 <= fig_box.y1, ax.get_title()


def test_wide_outlines_grow_inward_and_outward() -> None:
    gray = np.full((14, 14), 60, np.uint8)
    labels = np.zeros((14, 14), np.uint8)
    labels[3:11, 3:11] = 1
    inner = np.all(np.isclose(draw_outlines(gray, labels, None, line_px=2, halo=False), [0.902, 0.624, 0.0], atol=1e-3),
                   axis=2)  # Okabe-Ito orange, class 1  # fmt: skip
    ring = np.zeros((14, 14), bool)
    ring[3:11, 3:11] = True
    ring[5:9, 5:9] = False
    np.testing.assert_array_equal(inner, ring)


def test_without_untranslated_run_there_is_no_verdict(runs: tuple[list[Path], list[dict]], tmp_path: Path) -> None:
    dirs, _ = runs
    copy = tmp_path / "good"
    shutil.copytree(dirs[1], copy)
    loaded = load_runs([copy])
    s = build_summary(loaded, build_tables(loaded))
    assert s.verdicts == [] and s.baseline is None
    assert np.isnan(s.best[("gt", "psnr")].baseline)


def test_better_images_but_worse_downstream_is_mixed(runs: tuple[list[Path], list[dict]], tmp_path: Path) -> None:
    dirs, rows = runs
    copy = tmp_path / "good_images"
    shutil.copytree(dirs[1], copy)
    (copy / "planes.csv").unlink()
    _seg(copy, rows, {"source": [0.4, 0.5, 0.6, 0.5], "harmonized": [0.3, 0.4, 0.5, 0.4],
                      "ground_truth": [0.9, 0.9, 0.8, 1.0]})  # fmt: skip
    loaded = load_runs([dirs[0], copy])
    (v,) = build_summary(loaded, build_tables(loaded)).verdicts
    assert v.word == MIXED and "metrics vs ground truth" in v.sentence and "Dice 0.50 → 0.40 (worse)" in v.sentence


def test_a_judge_that_reads_the_same_is_a_tie_not_a_loss(runs: tuple[list[Path], list[dict]], tmp_path: Path) -> None:
    dirs, rows = runs
    copy = tmp_path / "same_dice"
    shutil.copytree(dirs[1], copy)
    (copy / "planes.csv").unlink()
    _seg(copy, rows, {"source": [0.4, 0.5, 0.6, 0.5], "harmonized": [0.5, 0.5, 0.5, 0.5],  # mean 0.50 both
                      "ground_truth": [0.9, 0.9, 0.8, 1.0]})  # fmt: skip
    loaded = load_runs([dirs[0], copy])
    (v,) = build_summary(loaded, build_tables(loaded)).verdicts
    assert "Dice 0.50 → 0.50 (same)" in v.sentence and "HD95 5.0 → 5.0 px (same)" in v.sentence
    assert "(worse)" not in v.sentence
    assert v.word == YES  # better images and nothing worse downstream: a tie does not make it mixed
    out = make_report([dirs[0], copy], tmp_path / "rep", ReportConfig(grid_frames=0, violins=False, figure=False))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "±0.00 =" in html and "= the same as the untranslated frames" in html


def test_an_exact_tie_in_any_table_is_marked_equal_not_worse() -> None:
    from sonoshift.report.html import _delta

    assert "=" in _delta("psnr", 20.0, 20.0) and "✗" not in _delta("psnr", 20.0, 20.0)
    assert "✓" in _delta("psnr", 20.5, 20.0) and "✗" in _delta("mae", 0.2, 0.1)
    assert "±0.00 =" in _delta("Dice", 0.501, 0.499, 2, True)  # equal at the two digits shown


def _result(label: str, values: dict[str, np.ndarray], patients: np.ndarray, order: np.ndarray | None = None):
    from sonoshift.report.load import RunResult

    n = len(patients)
    rows = pd.DataFrame({"reference": "target", "patient_id": patients, "video_id": [f"v{k}" for k in range(n)],
                         "frame_index": 0, **values})
    if order is not None:
        rows = rows.iloc[order].reset_index(drop=True)
    meta = {"metric_columns": list(values), "source_domain": "a", "target_domain": "b", "split": "test"}
    return RunResult(label, label, "", Path(label), meta, rows)


def test_a_verdict_counts_only_differences_outside_the_patient_bootstrap_interval() -> None:
    from sonoshift.report.summary import paired_better

    rng = np.random.default_rng(0)
    patients = np.repeat([f"P{k}" for k in range(8)], 3)  # 8 patients, 3 frames each
    base = {"psnr": rng.normal(12, 2, 24), "mae": rng.uniform(0.1, 0.3, 24)}
    sign = np.repeat([1.0, -1.0] * 4, 3)  # half the patients up, half down: no measurable change
    runs = {
        "untranslated": _result("untranslated", base, patients),
        # clearly better on both (PSNR up by 1 dB, MAE down), rows stored in another order
        "good": _result("good", {"psnr": base["psnr"] + 1.0, "mae": base["mae"] - 0.02}, patients,
                        order=rng.permutation(24)),
        "noise": _result("noise", {"psnr": base["psnr"] + 0.05 * sign + 0.01, "mae": base["mae"] - 0.001 * sign - 2e-4},
                         patients),
        "worse": _result("worse", {"psnr": base["psnr"] - 1.0, "mae": base["mae"] + 0.02}, patients),
    }
    u = runs["untranslated"]
    assert [paired_better(runs[k], u, "target", "psnr") for k in ("good", "noise", "worse")] == [True, False, False]
    assert [paired_better(runs[k], u, "target", "mae") for k in ("good", "noise", "worse")] == [True, False, False]
    assert paired_better(runs["good"], u, "target", "fid") == "unpaired"  # no per-frame values: compared by value
    assert paired_better(runs["good"], u, "gt", "psnr") is None  # no frame scored in that mode
    # the noise method's means are better on both metrics (by 0.01 dB and 0.0002), as a plain comparison of means
    # would count; within the patients' spread that is no gain, and its verdict is that it does not beat doing nothing
    noise = runs["noise"].rows
    assert noise["psnr"].mean() > u.rows["psnr"].mean() and noise["mae"].mean() < u.rows["mae"].mean()
    results = list(runs.values())
    summary = build_summary(results, build_tables(results))
    assert {v.label: v.word for v in summary.verdicts} == {"good": YES, "noise": NO, "worse": NO}
    assert VERDICT_RULE in summary_markdown(summary)  # the page says which differences count


@pytest.mark.parametrize("paired", [False, True, None])
def test_unpaired_data_is_said_in_the_summary(tmp_path: Path, paired: bool | None) -> None:
    """Real scanners' prepared data say ``paired: false`` in dataset.json: the evaluation records it, its target
    mode is described as another patient's frame, and the summary says so under the verdict; paired (simulator)
    or unknown data get neither."""
    import json

    from sonoshift.evaluate import UNPAIRED_TARGET_TEXT
    from sonoshift.report.summary import UNPAIRED_NOTE

    ds = tmp_path / "ds"
    rows = make_dataset(ds, n=3, with_gt=False)
    if paired is not None:
        (ds / "dataset.json").write_text(json.dumps({"paired": paired}), encoding="utf-8")
    dirs = [make_run(tmp_path / "raw", ds, rows, "untranslated", "raw source frames", lambda s, g, i: s),
            make_run(tmp_path / "m", ds, rows, "ddgan", "t", lambda s, g, i: g)]
    for d in dirs:
        evaluate_run(d, EvaluateConfig(modes=("target", "source"), lpips="none"), progress=False)
    meta = json.loads((dirs[1] / "metrics.json").read_text(encoding="utf-8"))
    assert meta["paired"] is paired
    assert (meta["mode_descriptions"]["target"] == UNPAIRED_TARGET_TEXT) == (paired is False)
    loaded = load_runs(dirs)
    context = build_summary(loaded, build_tables(loaded)).context
    assert (UNPAIRED_NOTE in context) == (paired is False)
    assert "3 frames per run" in context
