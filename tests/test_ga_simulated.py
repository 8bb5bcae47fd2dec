"""GA estimator on simulated head frames: the label-map ceiling is exact on drawn heads of known size."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sonoshift.data.manifests import write_manifest
from sonoshift.biometry.ellipse import ellipse_perimeter
from sonoshift.downstream.segmenter import ModelConfig, Segmenter, build_unet, save_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc as hadlock_ga_from_hc
from sonoshift.judges.ga.simulated import evaluate_simulated, summarize_simulated


@pytest.fixture()
def sim(tmp_path):
    root = tmp_path / "prep"
    rows = []
    for i, (a, b) in enumerate([(20.0, 15.0), (26.0, 20.0)]):
        lab = np.zeros((64, 64), np.uint8)
        cv2.ellipse(lab, ((31.5, 31.5), (2 * a, 2 * b), 0.0), 5, -1)  # simulator id 5 = brain
        img = np.where(lab > 0, 200, 40).astype(np.uint8)
        for kind, arr in (("frames", img), ("aligned/label_map", lab)):
            (root / kind / "cart" / "p0" / "v").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / kind / "cart" / "p0" / "v" / f"{i:05d}.png")
        # cv2 fills pixel centres inside the ellipse: the mask edge (what the fit measures) is 0.5 px outside
        hc_mm = ellipse_perimeter(a + 0.5, b + 0.5) * 2.0
        rows.append({"patient_id": "p0", "domain": "cart", "video_id": "v", "frame_index": i,
                     "path": f"frames/cart/p0/v/{i:05d}.png", "mask_path": "", "plane": "head",
                     "ga_weeks": hadlock_ga_from_hc(hc_mm), "label_path": f"aligned/label_map/cart/p0/v/{i:05d}.png",
                     "pixel_size_mm": 2.0})
    rows.append({**rows[0], "plane": "other", "frame_index": 9})
    write_manifest(root / "manifest_test.csv", rows)
    (root / "dataset.json").write_text(json.dumps({}))
    cfg = ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0)
    torch.manual_seed(0)
    lut = [0] * 256
    lut[5] = 1
    seg = Segmenter(build_unet(cfg, 2), ("background", "fetal_head"), 32, {"model": {"channels": [4, 8],
                    "strides": [2], "num_res_units": 0}}, {"label_lut": lut})
    save_segmenter(seg, tmp_path / "seg")
    return root, tmp_path / "seg"


def test_label_map_ceiling_recovers_the_phantom_ga(sim):
    root, seg = sim
    t = evaluate_simulated(seg, root)
    assert len(t) == 2  # the "other" frame is not measured
    # 2 mm pixels and 20-26 px radii: rasterization leaves ~0.1 px of radius, about 1 day of GA
    np.testing.assert_allclose(t["ga_err_hadlock_label_days"], 0.0, atol=1.5)
    s = summarize_simulated(t)
    assert list(s["domain"]) == ["cart"] and s.iloc[0]["frames"] == 2


def test_missing_pixel_size_is_named(sim):
    root, seg = sim
    man = root / "manifest_test.csv"
    man.write_text(man.read_text().replace(",2.0\n", ",\n"))
    with pytest.raises(SonoshiftError, match="has no pixel size"):
        evaluate_simulated(seg, root)
