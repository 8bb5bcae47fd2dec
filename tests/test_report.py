"""`sonoshift report` on fake evaluated runs: table numbers, bold best, arrows, figures, self-contained HTML."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fake_runs import make_dataset, make_run
from sonoshift.cli.main import main
from sonoshift.errors import SonoshiftError
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.report import ReportConfig, make_report
from sonoshift.report.outlines import LABEL_COLORS, draw_outlines


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("rep")
    ds = root / "ds"
    rows = make_dataset(ds, n=4)
    good = make_run(root / "good", ds, rows, "ddgan", "paper/t250", lambda s, g, i: np.clip(g.astype(int) + i + 1, 0, 255))
    bad = make_run(root / "bad", ds, rows, "cyclegan", "paper/cg", lambda s, g, i: np.clip(g.astype(int) + 20 + i, 0, 255))
    cfg = EvaluateConfig(modes=("target", "gt"), lpips="none")
    for r in (good, bad):
        evaluate_run(r, cfg, progress=False)
    return [good, bad]


def test_tables_match_metrics_csv_and_mark_the_best(runs: list[Path], tmp_path: Path) -> None:
    out = make_report(runs, tmp_path / "report", ReportConfig(grid_frames=0, violins=False))
    table = pd.read_csv(out / "table.csv")
    for run in runs:
        m = pd.read_csv(run / "metrics.csv")
        for mode in ("target", "gt"):
            sub = m[m["reference"] == mode]
            row = table[(table["reference"] == mode) & (table["method"] == sub["method"].iloc[0])].iloc[0]
            for k in ("psnr", "ssim", "mae", "lncc"):
                assert row[f"{k}_mean"] == pytest.approx(sub[k].mean(), abs=1e-12)
                assert row[f"{k}_std"] == pytest.approx(sub[k].std(ddof=0), abs=1e-12)
    best = table[table["reference"] == "gt"].set_index("method")
    assert best.loc["ddgan", "psnr_best"] == 1 and best.loc["cyclegan", "psnr_best"] == 0
    assert best.loc["ddgan", "mae_best"] == 1  # lower is better for MAE
    md = (out / "table.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method | Config | n |"))
    assert "| PSNR (dB) ↑ | MAE ↓ | SSIM ↑ |" in header
    assert "lower is better" in md and "not comparable to Inception-FID" in md
    ddgan_line = next(line for line in md.splitlines() if line.startswith("| ddgan | paper/t250 |"))
    assert re.search(r"\*\*\d+\.\d\d ± \d+\.\d\d\*\*", ddgan_line)
    cg_line = next(line for line in md.splitlines() if line.startswith("| cyclegan | paper/cg |"))
    assert "**" not in cg_line
    tex = (out / "table.tex").read_text()
    assert r"\textbf{" in tex and r"$\pm$" in tex and r"$\uparrow$" in tex and r"$\downarrow$" in tex
    assert "mask" in md and "inside the field-of-view mask" in md


def test_figures_and_self_contained_html(runs: list[Path], tmp_path: Path) -> None:
    out = make_report(runs, tmp_path / "report", ReportConfig(grid_frames=3, violin_metrics=("ssim", "mae")))
    violins = sorted((out / "violins").glob("*.png"))
    assert [p.name for p in violins] == ["gt_mae.png", "gt_ssim.png", "target_mae.png", "target_ssim.png"]
    with Image.open(violins[0]) as im:
        assert im.size[0] > 200 and im.size[1] > 200
    with Image.open(out / "grid.png") as im:
        w, h = im.size
    assert w > h  # 3 rows x (source + 2 runs + target + gt) columns
    with Image.open(out / "figure.png") as im:
        fw, fh = im.size
    assert fw > fh  # one frame: a row of plain panels and a row of outlined panels, side by side
    html = (out / "index.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(violins) + 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "ddgan" in html and "↓" in html


def test_overlay_outlines_each_class() -> None:
    gray = np.full((12, 12), 100, np.uint8)
    labels = np.zeros((12, 12), np.uint8)
    labels[2:8, 2:8] = 1
    labels[9:11, 1:11] = 2
    rgb = draw_outlines(gray, labels)
    assert np.allclose(rgb[2, 4], LABEL_COLORS[0]) and np.allclose(rgb[9, 5], LABEL_COLORS[1])
    assert np.allclose(rgb[5, 5], 100 / 255) and np.allclose(rgb[0, 0], 100 / 255)  # inside and outside untouched
    assert np.allclose(draw_outlines(gray, None), 100 / 255)


def test_duplicate_names_and_errors(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_report([runs[0], runs[0]], tmp_path / "dup", ReportConfig(grid_frames=0, violins=False))
    with open(out / "table.csv", newline="") as f:
        labels = {r["label"] for r in csv.DictReader(f)}
    assert labels == {"ddgan (paper/t250) [good]"}
    with pytest.raises(SonoshiftError, match="run `sonoshift evaluate"):
        make_report([tmp_path], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    cli = tmp_path / "cli"
    with pytest.raises(SystemExit) as e:
        main(["report", str(runs[0]), str(runs[1]), "--out", str(cli), "grid_frames=1", "violins=false"])
    assert e.value.code == 0 and (cli / "index.html").is_file()


def test_downstream_segmentation_table(runs: list[Path], tmp_path: Path) -> None:
    copies = []
    for run, dice in zip(runs, ([0.9, 0.8], [0.5, 0.7])):
        c = tmp_path / run.name
        shutil.copytree(run, c)
        pd.DataFrame({"method": ["x"] * 4, "variant": ["harmonized", "harmonized", "source", "source"],
                      "dice_mean": dice + [0.4, 0.6], "hd95_mean": [2.0, 4.0, float("inf"), 9.0]}).to_csv(
            c / "segmentation.csv", index=False)  # fmt: skip
        copies.append(c)
    out = make_report(copies, tmp_path / "rep", ReportConfig(grid_frames=0, violins=False))
    seg = pd.read_csv(out / "segmentation.csv")
    good = seg[(seg["method"] == "ddgan") & (seg["variant"] == "harmonized")].iloc[0]
    assert good["dice_mean"] == pytest.approx(0.85) and good["dice_std"] == pytest.approx(0.05)
    assert good["dice_best"] and good["hd95_best"]  # HD95 3.0 is the lowest
    src = seg[(seg["method"] == "ddgan") & (seg["variant"] == "source")].iloc[0]
    assert src["hd95_mean"] == pytest.approx(9.0)  # the infinite value is left out
    md = (out / "table.md").read_text()
    assert "Downstream segmentation" in md and "**0.8500 ± 0.0500**" in md
    assert "Downstream segmentation" in (out / "index.html").read_text()


def test_interval_section_holds_the_gt_means_and_a_patient_interval(runs: list[Path], tmp_path: Path) -> None:
    out = make_report(runs, tmp_path / "report", ReportConfig(grid_frames=0, violins=False, figure=False))
    (csv_path,) = (out / "sections").glob("*intervals_over_patients*.csv")
    section = pd.read_csv(csv_path).set_index("method")
    html = (out / "index.html").read_text()
    assert "Intervals over patients and the texture check (gt)" in html
    for run in runs:
        m = pd.read_csv(run / "metrics.csv")
        sub = m[m["reference"] == "gt"]
        cell = section.loc[sub["method"].iloc[0], "PSNR"]
        mean, low, high = (float(x) for x in re.findall(r"-?\d+\.\d+", cell))
        assert mean == pytest.approx(sub["psnr"].mean(), abs=5e-4)
        # the interval resamples patients: it spans the lowest and highest per-patient means at most
        per_patient = sub.groupby("patient_id")["psnr"].mean()
        assert per_patient.min() - 1e-3 <= low <= mean <= high <= per_patient.max() + 1e-3
    off = make_report(runs, tmp_path / "plain", ReportConfig(grid_frames=0, violins=False, figure=False,
                                                             intervals=False))
    assert not list(off.glob("sections/*intervals*")) and not (off / "table_ci.md").exists()
    assert (out / "table_ci.md").read_text().startswith("| method | PSNR | SSIM | LNCC | BC |")


def test_a_metric_with_no_value_is_said_and_a_word_in_a_metric_is_refused(runs: list[Path], tmp_path: Path) -> None:
    from sonoshift.report.load import load_runs
    from sonoshift.report.summary import build_summary
    from sonoshift.report.table import build_tables

    run = tmp_path / "run"
    shutil.copytree(runs[1], run)
    table = pd.read_csv(run / "metrics.csv")
    table["psnr"] = np.nan  # no value in any frame: left out of the verdict, and the summary says so
    table.to_csv(run / "metrics.csv", index=False)
    loaded = load_runs([runs[0], run])
    assert "no value in any frame, left out of the verdict: psnr (cyclegan (paper/cg))" in \
        build_summary(loaded, build_tables(loaded)).context
    assert "no value in any frame" not in build_summary(loaded[:1], build_tables(loaded[:1])).context
    table = table.astype({"ssim": object})
    table.loc[2, "ssim"] = "abc"
    table.to_csv(run / "metrics.csv", index=False)
    with pytest.raises(SonoshiftError, match=r"metrics.csv line 4 holds 'abc' in column ssim, not a number"):
        make_report([runs[0], run], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()
