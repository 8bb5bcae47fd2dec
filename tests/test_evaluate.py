"""`sonoshift evaluate` on fake run folders: values against independent references, modes, masks, errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fake_runs import make_dataset, make_run, write_lpips_weights
from sonoshift.cli.main import main
from sonoshift.errors import SonoshiftError
from sonoshift.evaluate import EvaluateConfig, evaluate_run
from sonoshift.metrics.lpips import load_lpips, lpips_distance


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float64) / 255


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    ds = tmp_path / "ds"
    rows = make_dataset(ds, n=3)
    noisy = lambda s, g, i: np.clip(g.astype(int) + (i + 1) * 3, 0, 255)  # noqa: E731 - known offset from gt
    return make_run(tmp_path / "run", ds, rows, "cyclegan", "cpu/cyclegan", noisy), ds, rows


def test_unmasked_values_match_skimage_in_every_mode(run) -> None:
    run_dir, ds, rows = run
    out = evaluate_run(run_dir, EvaluateConfig(use_mask=False, lpips="none"), progress=False)
    got = _rows(out)
    assert len(got) == 3 * 3 and {r["reference"] for r in got} == {"target", "source", "gt"}
    for r in got:
        o = _gray(run_dir / r["output_path"])
        ref = _gray(ds / r["reference_path"])
        assert r["method"] == "cyclegan" and r["config"] == "cpu/cyclegan" and r["mask_used"] == "0"
        assert float(r["psnr"]) == pytest.approx(peak_signal_noise_ratio(ref, o, data_range=1), abs=1e-4)
        sk = structural_similarity(o, ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=1)  # fmt: skip
        assert float(r["ssim"]) == pytest.approx(sk, abs=1e-4)
        assert float(r["mae"]) == pytest.approx(np.abs(o - ref).mean(), abs=1e-6)
    gt_rows = [r for r in got if r["reference"] == "gt"]
    # outputs are gt + 3 (i + 1) grey levels: MAE known exactly wherever no clipping happens
    assert [round(float(r["mae"]) * 255, 3) for r in gt_rows] == pytest.approx([3, 6, 9], abs=0.2)
    meta = json.loads((run_dir / "metrics.json").read_text())
    assert meta["method"] == "cyclegan" and meta["mask_used"] is False and meta["modes"] == ["target", "source", "gt"]
    assert meta["higher_is_better"]["mae"] is False
    dist = _rows(run_dir / "metrics_dataset.csv")
    fid_rows = [d for d in dist if d["metric"] == "fid"]
    assert len(fid_rows) == 3 and all("not comparable to Inception-FID" in d["note"] for d in fid_rows)


def test_mask_restricts_metrics(run) -> None:
    run_dir, ds, _ = run
    got = _rows(evaluate_run(run_dir, EvaluateConfig(modes=("target",), lpips="none", distribution=False), False))
    assert len(got) == 3
    for r in got:
        o, ref = _gray(run_dir / r["output_path"]), _gray(ds / r["reference_path"])
        m = np.asarray(Image.open(ds / f"masks/src/{r['patient_id']}/v0/{int(r['frame_index']):05d}.png")) > 127
        mse = ((o - ref)[m] ** 2).mean()
        assert r["mask_used"] == "1"
        assert float(r["psnr"]) == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    assert json.loads((run_dir / "metrics.json").read_text())["mask_used"] is True
    assert (run_dir / "metrics_dataset.csv").read_text().count("\n") == 1  # header only


def test_gt_mode_skipped_without_ground_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty_hub"))  # no LPIPS weights anywhere
    ds = tmp_path / "ds"
    rows = make_dataset(ds, n=2, with_gt=False)
    run_dir = make_run(tmp_path / "run", ds, rows, "ddgan", "paper/t250", lambda s, g, i: s)
    got = _rows(evaluate_run(run_dir, EvaluateConfig(lpips="auto"), progress=False))
    assert "lpips_alex" not in got[0]
    assert json.loads((run_dir / "metrics.json").read_text())["lpips"].startswith("not computed: LPIPS-alex needs")
    assert {r["reference"] for r in got} == {"target", "source"}
    source_rows = [r for r in got if r["reference"] == "source"]
    assert all(math.isinf(float(r["psnr"])) and float(r["ssim"]) == pytest.approx(1.0) for r in source_rows)
    assert "gt" in json.loads((run_dir / "metrics.json").read_text())["modes_skipped"]


def test_lpips_column_with_generated_weights(run, tmp_path: Path) -> None:
    run_dir, ds, _ = run
    write_lpips_weights(tmp_path / "w", "alex")
    cfg = EvaluateConfig(modes=("gt",), use_mask=False, lpips="alex", lpips_weights=str(tmp_path / "w"))
    got = _rows(evaluate_run(run_dir, cfg, progress=False))
    model = load_lpips("alex", tmp_path / "w")
    for r in got:
        a = torch.tensor(_gray(run_dir / r["output_path"])).float()[None, None]
        b = torch.tensor(_gray(ds / r["reference_path"])).float()[None, None]
        assert float(r["lpips_alex"]) == pytest.approx(lpips_distance(model, a, b).item(), rel=1e-5)


def test_errors_name_the_file(run, tmp_path: Path) -> None:
    run_dir, ds, rows = run
    with pytest.raises(SonoshiftError, match="unknown reference mode"):
        evaluate_run(run_dir, EvaluateConfig(modes=("paired",)))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(ds / rows[1]["target_path"])
    with pytest.raises(SonoshiftError, match=r"but reference .*00001\.png"):
        evaluate_run(run_dir, EvaluateConfig(modes=("target",), lpips="none"), progress=False)
    assert not (run_dir / "metrics.csv").exists()  # nothing half-written
    with pytest.raises(SonoshiftError, match="run.json does not exist"):
        evaluate_run(tmp_path, EvaluateConfig())


def test_cli_evaluate_and_error_exit(run, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _, _ = run
    with pytest.raises(SystemExit) as ok:
        main(["evaluate", str(run_dir), "modes=source", "lpips=none", "use_mask=false", "-q"])
    assert ok.value.code == 0
    assert {r["reference"] for r in _rows(run_dir / "metrics.csv")} == {"source"}
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(run_dir / "nope"), "-q"])
    assert e.value.code == 1 and "error:" in capsys.readouterr().err


def test_bad_settings_and_bad_rows_are_said_before_earlier_metrics_are_looked_at(run) -> None:
    run_dir, _, _ = run
    evaluate_run(run_dir, EvaluateConfig(modes=("source",), lpips="none"), progress=False)
    before = (run_dir / "metrics.csv").read_text()
    # another, impossible mode: the mode is the error, not the earlier metrics
    with pytest.raises(SonoshiftError, match="unknown reference mode 'bogus'"):
        evaluate_run(run_dir, EvaluateConfig(modes=("source", "bogus"), lpips="none"), progress=False)
    table = run_dir / "outputs.csv"
    text = table.read_text()
    header, first, *rest = text.splitlines()
    cells = first.split(",")
    cells[header.split(",").index("frame_index")] = "nan"
    table.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    with pytest.raises(SonoshiftError, match="line 2 has frame_index 'nan', not a whole number"):
        evaluate_run(run_dir, EvaluateConfig(modes=("source",), lpips="none"), progress=False, force=True)
    cells = first.split(",")
    cells[header.split(",").index("output_path")] = ""
    table.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    with pytest.raises(SonoshiftError, match="line 2 has no output_path"):
        evaluate_run(run_dir, EvaluateConfig(modes=("source",), lpips="none"), progress=False, force=True)
    assert (run_dir / "metrics.csv").read_text() == before  # nothing replaced
