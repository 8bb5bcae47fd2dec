"""Quality scores of bench/realtime.py (deploy.quality): GT PSNR, GT SSIM and downstream Dice against hand-made
numpy / scikit-image references, with a segmenter whose prediction is known (class 1 where the pixel > 127)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sonoshift.deploy.quality import SplitReference, frame_dice, score_frames, split_quality
from sonoshift.downstream.segmenter import Segmenter
from sonoshift.errors import SonoshiftError

N, S = 5, 24


def threshold_segmenter() -> Segmenter:
    """Class 1 ("bright") where the input pixel is above mid-grey, else background."""
    net = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
        net.weight[1, 0] = 50.0
    return Segmenter(model=net, classes=("background", "bright"), image_size=S)


def reference(seed: int = 0, segmenter: bool = True) -> SplitReference:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (N, S, S), dtype=np.uint8)
    gt = rng.integers(0, 256, (N, S, S), dtype=np.uint8)
    fov = np.zeros((N, S, S), bool)
    fov[:, 2:20, 3:22] = True
    labels = (rng.random((N, S, S)) < 0.4).astype(np.uint8)
    labels[:, :, :4] = 0
    return SplitReference(frames, gt, fov, labels if segmenter else None, threshold_segmenter() if segmenter else None)


class Identity:
    method, image_size, source_domain, target_domain, stochastic = "identity", (S, S), "a", "b", False

    def __call__(self, x, generator=None):
        return x


def numpy_dice(pred: np.ndarray, label: np.ndarray) -> float:
    inter = np.logical_and(pred, label).sum()
    total = pred.sum() + label.sum()
    return np.nan if total == 0 else 2 * inter / total


def test_psnr_and_dice_match_numpy_references() -> None:
    ref = reference()
    y = np.random.default_rng(9).integers(0, 256, (N, S, S), dtype=np.uint8)
    got = score_frames(y, ref)
    err = [((y[i][ref.fov[i]] / 255.0 - ref.gt[i][ref.fov[i]] / 255.0) ** 2).mean() for i in range(N)]
    assert got["gt_psnr"] == pytest.approx(np.mean([10 * np.log10(1 / e) for e in err]), abs=1e-4)
    pred = (y > 127.5) & ref.fov  # what the threshold segmenter predicts, background outside the field of view
    want = [numpy_dice(pred[i], ref.labels[i] == 1) for i in range(N)]
    np.testing.assert_allclose(frame_dice(ref.segmenter, y, ref.labels, ref.fov), want, atol=1e-6)
    assert got["dice"] == pytest.approx(np.nanmean(want), abs=1e-6) and got["n"] == N
    empty = np.zeros_like(y)  # nothing predicted: Dice 0 wherever a label exists
    assert score_frames(empty, ref)["dice"] == 0.0


def test_ssim_with_a_full_field_of_view_matches_scikit_image() -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    ref = reference(segmenter=False)
    ref = SplitReference(ref.frames, ref.gt, np.ones_like(ref.fov))
    y = np.clip(ref.gt.astype(int) + np.random.default_rng(3).integers(-40, 40, ref.gt.shape), 0, 255).astype(np.uint8)
    want = np.mean([skimage_metrics.structural_similarity(
        y[i] / 255.0, ref.gt[i] / 255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0) for i in range(N)])
    got = score_frames(y, ref)
    assert got["gt_ssim"] == pytest.approx(want, abs=1e-4) and "dice" not in got


def test_split_quality_scores_each_translator_and_the_ground_truth_bound() -> None:
    ref = reference()
    q = split_quality({"identity": Identity()}, ref)
    assert q["identity"] == score_frames(ref.frames, ref)
    bound = q["ground truth (upper bound)"]
    assert bound["gt_psnr"] == float("inf") and bound["gt_ssim"] == pytest.approx(1.0)
    pred = (ref.gt > 127.5) & ref.fov
    assert bound["dice"] == pytest.approx(np.nanmean([numpy_dice(pred[i], ref.labels[i] == 1) for i in range(N)]))
    with pytest.raises(SonoshiftError, match="do not match"):
        score_frames(ref.frames[:2], ref)


def test_load_reads_the_caches_and_refuses_a_dataset_without_ground_truth(tmp_path: Path) -> None:
    ref = reference(segmenter=False)
    cache = tmp_path / "cache" / "test"
    cache.mkdir(parents=True)
    np.save(cache / "handheld.npy", ref.frames)
    np.save(cache / "handheld.mask.npy", ref.fov.astype(np.uint8) * 255)
    with pytest.raises(SonoshiftError, match="no ground truth gt_cart"):
        SplitReference.load(tmp_path, "test", "handheld", "cart")
    np.save(cache / "handheld.gt_cart.npy", ref.gt)
    got = SplitReference.load(tmp_path, "test", "handheld", "cart")
    np.testing.assert_array_equal(got.gt, ref.gt)
    np.testing.assert_array_equal(got.fov, ref.fov)
    assert got.segmenter is None and got.labels is None
    every2 = SplitReference.load(tmp_path, "test", "handheld", "cart", stride=2)
    np.testing.assert_array_equal(every2.frames, ref.frames[::2])
    np.testing.assert_array_equal(every2.gt, ref.gt[::2])


def test_load_maps_label_ids_through_the_segmenters_lut(tmp_path: Path) -> None:
    from sonoshift.config import to_dict
    from sonoshift.downstream.segmenter import ModelConfig, build_unet, save_segmenter

    cfg = ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0)
    lut = [0] * 256
    lut[7], lut[9] = 1, 2  # label ids 7 and 9 are the segmenter's classes 1 and 2; every other id background
    seg = Segmenter(build_unet(cfg, 3), ("background", "a", "b"), S, {"model": to_dict(cfg)}, {"label_lut": lut})
    save_segmenter(seg, tmp_path / "seg")
    ref = reference(segmenter=False)
    raw = np.random.default_rng(4).choice(np.array([0, 3, 7, 9], np.uint8), size=ref.frames.shape)
    cache = tmp_path / "cache" / "test"
    cache.mkdir(parents=True)
    for kind, arr in ((None, ref.frames), ("gt_cart", ref.gt), ("mask", ref.fov.astype(np.uint8)), ("label_map", raw)):
        np.save(cache / ("handheld.npy" if kind is None else f"handheld.{kind}.npy"), arr)
    got = SplitReference.load(tmp_path, "test", "handheld", "cart", segmenter=tmp_path / "seg")
    np.testing.assert_array_equal(got.labels, np.select([raw == 7, raw == 9], [1, 2], 0))
    assert got.segmenter.classes == ("background", "a", "b") and 0 <= score_frames(ref.frames, got)["dice"] <= 1


def test_per_frame_scores_and_patients_for_bootstrap_intervals(tmp_path: Path) -> None:
    from sonoshift.data.manifests import write_manifest
    from sonoshift.deploy.quality import frame_scores

    ref = reference()
    y = np.random.default_rng(5).integers(0, 256, (N, S, S), dtype=np.uint8)
    per = frame_scores(y, ref)
    want = [10 * np.log10(1 / ((y[i][ref.fov[i]] / 255.0 - ref.gt[i][ref.fov[i]] / 255.0) ** 2).mean())
            for i in range(N)]
    np.testing.assert_allclose(per["gt_psnr"], want, atol=1e-4)  # one value per frame, numpy reference
    np.testing.assert_allclose(per["dice"], frame_dice(ref.segmenter, y, ref.labels, ref.fov))
    got: dict[str, dict[str, np.ndarray]] = {}
    q = split_quality({"identity": Identity()}, ref, per_frame=got)
    assert q["identity"]["gt_ssim"] == pytest.approx(got["identity"]["gt_ssim"].mean())
    # patients: from the manifest's rows of the source domain, in cache order (a target-domain row in between)
    cache = tmp_path / "cache" / "test"
    cache.mkdir(parents=True)
    for kind, arr in ((None, ref.frames), ("gt_cart", ref.gt), ("mask", ref.fov.astype(np.uint8))):
        np.save(cache / ("handheld.npy" if kind is None else f"handheld.{kind}.npy"), arr)
    assert SplitReference.load(tmp_path, "test", "handheld", "cart").patients is None  # no manifest
    ids = ["P1", "P1", "P2", "P3", "P3"]
    rows = [{"patient_id": p, "domain": "handheld", "video_id": f"{p}_v", "frame_index": i, "path": f"f{i}.png"}
            for i, p in enumerate(ids)]
    rows.insert(2, {"patient_id": "P9", "domain": "cart", "video_id": "P9_v", "frame_index": 0, "path": "c.png"})
    write_manifest(tmp_path / "manifest_test.csv", rows)
    assert list(SplitReference.load(tmp_path, "test", "handheld", "cart").patients) == ids
    assert list(SplitReference.load(tmp_path, "test", "handheld", "cart", stride=2).patients) == ids[::2]
