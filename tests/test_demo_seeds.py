"""`sonoshift demo --seeds` / `make demo-full`: only the translators' seed varies, and the aggregate over seeds is
the mean and spread of each seed's test-frame means."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from sonoshift.cli.main import app
from sonoshift.pipeline.seeds import aggregate_seeds, seeds_markdown
from sonoshift.pipeline.study import StudyConfig, _overrides


def test_train_seed_reaches_the_translators_only() -> None:
    assert "train.seed=0" in _overrides(StudyConfig(seed=0), "ddgan", Path("m"))
    assert "train.seed=2" in _overrides(StudyConfig(seed=0, train_seed=2), "ddgan", Path("m"))


def test_study_overrides_reach_the_named_method_only() -> None:
    from sonoshift.config import load_config
    from sonoshift.pipeline.demo import DemoConfig

    cfg = load_config(DemoConfig, None, ["study.overrides.ddgan=[anchor_despeckle_kind=bilateral]"]).study
    assert "anchor_despeckle_kind=bilateral" in _overrides(cfg, "ddgan", Path("m"))
    assert not any("despeckle" in o for o in _overrides(cfg, "cascade", Path("m")))


def _fake_run(root: Path, method: str, psnr: list[float], dice: dict[str, list[float]]) -> None:
    run = root / "harmonized" / method
    run.mkdir(parents=True)
    n = len(psnr)
    rows = [{"reference": ref, "psnr": v + off, "ssim": 0.5, "lncc": 0.7, "bc": 0.9}
            for ref, off in (("gt", 0.0), ("target", -5.0)) for v in psnr]  # "target" rows must be ignored
    pd.DataFrame(rows).to_csv(run / "metrics.csv", index=False)
    seg = [{"variant": variant, "dice_mean": d} for variant, ds in dice.items() for d in ds]
    pd.DataFrame(seg).to_csv(run / "segmentation.csv", index=False)
    assert n == len(dice["harmonized"])


def test_aggregate_is_mean_and_sample_std_over_seed_means(tmp_path: Path) -> None:
    # seed 0: PSNR frames 20, 22 -> 21; Dice 0.5, 0.7 -> 0.6, raw 0.2, GT 1.0 -> gap (0.6 - 0.2) / 0.8 = 0.5
    _fake_run(tmp_path / "s0", "ddgan", [20.0, 22.0],
              {"harmonized": [0.5, 0.7], "source": [0.2, 0.2], "ground_truth": [1.0, 1.0]})
    # seed 1: PSNR 24, 26 -> 25; Dice 0.8 -> gap (0.8 - 0.2) / 0.8 = 0.75
    _fake_run(tmp_path / "s1", "ddgan", [24.0, 26.0],
              {"harmonized": [0.8, 0.8], "source": [0.2, 0.2], "ground_truth": [1.0, 1.0]})
    t = aggregate_seeds({0: tmp_path / "s0", 1: tmp_path / "s1"}).set_index("metric")
    assert t.loc["psnr", "mean"] == 23.0 and np.isclose(t.loc["psnr", "std"], np.sqrt(8.0))  # (21, 25): var 8
    assert (t.loc["psnr", "min"], t.loc["psnr", "max"], t.loc["psnr", "n"]) == (21.0, 25.0, 2)
    assert np.isclose(t.loc["dice", "mean"], 0.7) and np.isclose(t.loc["gap_recovered", "mean"], 0.625)
    assert np.isclose(t.loc["gap_recovered", "std"], np.std([0.5, 0.75], ddof=1))
    md = seeds_markdown(aggregate_seeds({0: tmp_path / "s0", 1: tmp_path / "s1"}))
    assert "over 2 training seeds" in md and "| ddgan | 23.000 +- 2.828 [21.000, 25.000] |" in md


def test_seeds_option_rejects_bad_values_before_running(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--seeds", "0,x", "-o", str(tmp_path / "d")])
    assert res.exit_code != 0 and "comma-separated integers" in res.output
    res = CliRunner().invoke(app, ["demo", "--seeds", "1,1", "-o", str(tmp_path / "d")])
    assert res.exit_code != 0 and "distinct" in str(res.exception)
    assert not (tmp_path / "d").exists()


def test_seeds_share_the_first_folder_and_the_default_seed_is_the_plain_demo(tmp_path: Path, monkeypatch) -> None:
    import sonoshift.pipeline.demo as demo
    from sonoshift.pipeline.seeds import run_demo_seeds

    calls = []

    def fake(out, cfg, *, force, progress, shared=None):
        calls.append((Path(out).name, cfg.study.train_seed, shared, cfg.difusal.overrides[-1]))
        _fake_run(Path(out), "ddgan", [20.0], {"harmonized": [0.5], "source": [0.2], "ground_truth": [1.0]})
        return {}

    monkeypatch.setattr(demo, "run_demo", fake)
    cfg = dataclasses.replace(demo.DemoConfig(), study=StudyConfig(seed=0))
    run_demo_seeds(tmp_path, cfg, (0, 1, 2), progress=False)
    first = tmp_path / "seed_0"
    assert calls == [("seed_0", None, None, "seed=0"), ("seed_1", 1, first, "seed=1"), ("seed_2", 2, first, "seed=2")]


def _fake_loop(root: Path, rows: list[tuple[str, str, int, float]]) -> None:
    (root / "difusal").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["regime", "arm", "round", "macro_f1"]).to_csv(root / "difusal" / "metrics.csv",
                                                                           index=False)


def test_loop_seeds_aggregate_the_last_round_and_the_per_seed_gain(tmp_path: Path) -> None:
    from sonoshift.pipeline.difusal_seeds import aggregate_loop_seeds, loop_seeds_markdown

    # seed 0: better baseline classical_aug 0.5 -> gain 0.7 - 0.5 = +0.2 (round 1 rows must be ignored)
    _fake_loop(tmp_path / "s0", [("regime_010", "real", 1, 0.9), ("regime_010", "difusal", 1, 0.0),
                                 ("regime_010", "real", 3, 0.4), ("regime_010", "classical_aug", 3, 0.5),
                                 ("regime_010", "difusal", 3, 0.7)])
    # seed 1: better baseline real 0.6 -> gain 0.5 - 0.6 = -0.1
    _fake_loop(tmp_path / "s1", [("regime_010", "real", 3, 0.6), ("regime_010", "classical_aug", 3, 0.3),
                                 ("regime_010", "difusal", 3, 0.5)])
    (tmp_path / "s2").mkdir()  # a folder that ran no loop counts for nothing
    t = aggregate_loop_seeds({0: tmp_path / "s0", 1: tmp_path / "s1", 2: tmp_path / "s2"}).set_index("arm")
    assert np.isclose(t.loc["difusal", "mean"], 0.6) and np.isclose(t.loc["difusal", "std"], np.std([0.7, 0.5], ddof=1))
    gain = t.loc["difusal - better baseline"]
    assert gain["n"] == 2 and np.isclose(gain["mean"], 0.05) and np.isclose(gain["min"], -0.1)
    assert np.isclose(gain["max"], 0.2)
    md = loop_seeds_markdown(aggregate_loop_seeds({0: tmp_path / "s0", 1: tmp_path / "s1"}))
    assert "over 2 loop seeds" in md and "| regime_010 | difusal | 0.600 +- 0.141 [0.500, 0.700] |" in md
    assert loop_seeds_markdown(aggregate_loop_seeds({2: tmp_path / "s2"})) == ""


def test_demo_full_runs_the_whole_difusal_protocol() -> None:
    """`make demo-full` passes the protocol's loop config: both low-data regimes and every declared arm."""
    import re

    from sonoshift.config import load_config
    from sonoshift.difusal.config import DifusalConfig

    line = next(ln for ln in Path("Makefile").read_text().splitlines() if "--seeds" in ln)
    (path,) = re.findall(r"difusal\.config=(\S+)", line)
    cfg = load_config(DifusalConfig, path, [])
    assert sorted(cfg.label_fractions) == [0.1, 0.25]
    assert set(cfg.arms) == {"real", "classical_aug", "unfiltered", "uniform", "difusal"}


def test_loop_seeds_gain_in_ga_days_counts_lower_as_better_and_seeds_md_has_both_measures(tmp_path: Path,
                                                                                          monkeypatch) -> None:
    import sonoshift.pipeline.demo as demo
    from sonoshift.pipeline.difusal_seeds import aggregate_loop_seeds
    from sonoshift.pipeline.seeds import run_demo_seeds

    cols = ["regime", "arm", "round", "macro_f1", "ga_mae_days"]
    loops = {  # seed 0: better baseline real 20 d, DiFUSAL 15 d -> +5; seed 1: classical_aug 10 d, DiFUSAL 14 d -> -4
        0: [("regime_010", "real", 3, 0.4, 20.0), ("regime_010", "classical_aug", 3, 0.5, 30.0),
            ("regime_010", "difusal", 3, 0.7, 15.0)],
        1: [("regime_010", "real", 3, 0.6, 12.0), ("regime_010", "classical_aug", 3, 0.3, 10.0),
            ("regime_010", "difusal", 3, 0.5, 14.0)],
    }

    def fake(out, cfg, *, force, progress, shared=None):
        _fake_run(Path(out), "ddgan", [20.0], {"harmonized": [0.5], "source": [0.2], "ground_truth": [1.0]})
        (Path(out) / "difusal").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(loops[int(Path(out).name[-1])], columns=cols).to_csv(Path(out) / "difusal" / "metrics.csv",
                                                                          index=False)
        return {}

    monkeypatch.setattr(demo, "run_demo", fake)
    res = run_demo_seeds(tmp_path, dataclasses.replace(demo.DemoConfig(), study=StudyConfig(seed=0)), (0, 1),
                         progress=False)
    ga = aggregate_loop_seeds({k: tmp_path / f"seed_{k}" for k in (0, 1)}, "ga_mae_days").set_index("arm")
    gain = ga.loc["difusal - better baseline"]
    assert np.isclose(gain["min"], -4.0) and np.isclose(gain["max"], 5.0) and np.isclose(gain["mean"], 0.5)
    md = Path(res["markdown"]).read_text()
    assert "macro_f1 at the last round" in md and "ga_mae_days at the last round" in md
    assert "| regime_010 | difusal | 14.500 +- 0.707 [14.000, 15.000] |" in md
    saved = pd.read_csv(tmp_path / "difusal_seeds.csv")
    assert set(saved["measure"]) == {"macro_f1", "ga_mae_days"}
