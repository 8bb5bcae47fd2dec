"""The HC18 stage of `sonoshift demo --real`: the GA estimator is two-stage (segmenter + crop refiner trained in the
stage) unless the refiner config is empty; its HC table matches the per-image errors it wrote."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.estimator import load_ga_estimator
from sonoshift.pipeline.real import RealConfig, _hc18_ga
from test_ga_estimator import fake_hc18  # noqa: F401 (fixture)

TINY = "image_size: 32\nval_fraction: 0.25\nmodel: {channels: [4, 8], strides: [2]}\ntrain: {steps: 4, batch_size: 4}\n"


@pytest.mark.slow
def test_hc18_stage_trains_a_refiner_and_scores_the_two_stage_estimator(fake_hc18, tmp_path):
    from sonoshift.config import load_config
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter

    (tmp_path / "seg.yaml").write_text(TINY.replace("steps: 4", "steps: 60"))  # enough to find the fake heads
    (tmp_path / "crop.yaml").write_text(TINY + "head_crops: 3\ncrop_margin: [1.2, 1.4]\n")
    seg = tmp_path / "seg"
    train_hc18_segmenter(load_config(Hc18Config, tmp_path / "seg.yaml", [f"data_dir={fake_hc18}"]), seg, progress=False)
    data_root = fake_hc18.parent
    two = _hc18_ga(RealConfig(hc18_ga_config="", hc18_refiner_config=str(tmp_path / "crop.yaml"),
                              steps_hc18_refiner=0), tmp_path / "two", data_root, seg)
    est = load_ga_estimator(two["estimator"])
    assert len(est.refiners) == 1 and est.refiners[0].info["head_crop"] and est.rescue_iou > 0
    hc = pd.read_csv(two["hc"]).iloc[0]
    per_image = pd.read_csv(tmp_path / "two" / "models" / "ga_estimator" / "hc18_validation.csv")
    assert hc["stages"] == 2 and hc["images"] == len(per_image) == 3  # 3 of 12 fake subjects held out
    assert per_image["head_found"].all() and hc["no_head_found"] == 0
    assert hc["hc_abs_err_mm_mean"] == pytest.approx(np.abs(per_image["hc_mm"] - per_image["hc_true_mm"]).mean())
    assert pd.read_csv(two["hc"]).iloc[0]["first_stage"] == str(seg)  # the head segmenter given
    one = _hc18_ga(RealConfig(hc18_ga_config="", hc18_refiner_config=""), tmp_path / "one", data_root, seg)
    assert pd.read_csv(one["hc"]).iloc[0]["stages"] == 1 and not load_ga_estimator(one["estimator"]).refiners
    # its own first stage, trained in the stage from a config
    own = _hc18_ga(RealConfig(hc18_ga_config=str(tmp_path / "seg.yaml"), steps_hc18_ga=60,
                              hc18_refiner_config=str(tmp_path / "crop.yaml"), steps_hc18_refiner=4), tmp_path / "own",
                   data_root, seg)
    row = pd.read_csv(own["hc"]).iloc[0]
    assert row["stages"] == 2 and row["first_stage"] == str(tmp_path / "own" / "models" / "hc18_ga_segmenter")
    with pytest.raises(SonoshiftError, match="not a crop refiner"):
        _hc18_ga(RealConfig(hc18_ga_config="", hc18_refiner_config=str(tmp_path / "seg.yaml")), tmp_path / "bad",
                 data_root, seg)
    with pytest.raises(SonoshiftError, match="is a crop refiner"):
        _hc18_ga(RealConfig(hc18_ga_config=str(tmp_path / "crop.yaml")), tmp_path / "bad", data_root, seg)
