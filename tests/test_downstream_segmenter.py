"""The U-Net segmenter: training lifts Dice, same seed -> same weights, checkpoints round-trip, inputs are sane."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from sonoshift.downstream.segmenter import (
    ModelConfig,
    SegmenterTrainConfig,
    augment,
    frames_to_input,
    shadow_wedge,
    labels_to_target,
    load_segmenter,
    predict,
    predict_proba,
    save_segmenter,
    train_segmenter,
)
from sonoshift.downstream.synthetic import ellipse_images
from sonoshift.errors import SonoshiftError
from sonoshift.metrics.segmentation import dice_per_class

TINY = ModelConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=0)
FAST = SegmenterTrainConfig(steps=40, batch_size=4, lr=5e-3, intensity_jitter=0.05, noise_std=0.0)


@pytest.fixture(scope="module")
def data():
    imgs, masks = ellipse_images(48, 32, np.random.default_rng(0))
    test_imgs, test_masks = ellipse_images(12, 32, np.random.default_rng(1))
    return imgs, masks, test_imgs, test_masks


@pytest.fixture(scope="module")
def trained(data):
    imgs, masks, _, _ = data
    return train_segmenter(
        frames_to_input(imgs, 32), labels_to_target(masks, 32), ("background", "head"), TINY, FAST,
        config={"note": "kept"}, progress=False,
    )


def _mean_dice(preds, masks):
    return float(np.mean([dice_per_class(p, m, 2)[0] for p, m in zip(preds, masks)]))


def test_training_beats_trivial_baselines(data, trained):
    _, masks, test_imgs, test_masks = data
    learned = _mean_dice(predict(trained, list(test_imgs)), test_masks)
    # Trivial baselines: "everything is head" and the training set's pixel-wise majority mask.
    all_head = _mean_dice([np.ones_like(m) for m in test_masks], test_masks)
    prior = (masks.mean(0) > 0.5).astype(np.uint8)
    majority = _mean_dice([prior] * len(test_masks), test_masks)
    assert learned > 0.8
    assert learned > max(all_head, majority) + 0.3
    hist = trained.info["loss_history"]
    assert hist[-1] < hist[0]


def test_same_seed_same_weights_and_different_seed_differs(data):
    imgs, masks, _, _ = data
    x, y = frames_to_input(imgs[:8], 32), labels_to_target(masks[:8], 32)
    cfg = SegmenterTrainConfig(steps=3, batch_size=4, seed=7)
    a = train_segmenter(x, y, ("bg", "head"), TINY, cfg, progress=False)
    b = train_segmenter(x, y, ("bg", "head"), TINY, cfg, progress=False)
    c = train_segmenter(x, y, ("bg", "head"), TINY, SegmenterTrainConfig(steps=3, batch_size=4, seed=8), progress=False)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_ema_network_is_the_warmed_up_average_of_the_plain_iterates(data):
    """ema_decay > 0 returns the average of the online iterates, with engine/ema.py's warm-up decay
    min(d, (1 + n) / (10 + n)) written out by hand here; the iterates are those of plain runs of 1 and 2 steps."""
    from sonoshift.downstream.segmenter import build_unet

    imgs, masks, _, _ = data
    x, y = frames_to_input(imgs[:8], 32), labels_to_target(masks[:8], 32)
    plain = [train_segmenter(x, y, ("bg", "head"), TINY, SegmenterTrainConfig(steps=k, batch_size=4, seed=3),
                             progress=False).model.state_dict() for k in (1, 2)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        init = build_unet(TINY, 2).state_dict()
    got = train_segmenter(x, y, ("bg", "head"), TINY, SegmenterTrainConfig(steps=2, batch_size=4, seed=3,
                                                                          ema_decay=0.5), progress=False)
    d1, d2 = min(0.5, 1 / 10), min(0.5, 2 / 11)
    state = got.model.state_dict()
    assert not got.model.training and all(p.requires_grad for p in got.model.parameters())
    for k, w in state.items():
        e1 = d1 * init[k] + (1 - d1) * plain[0][k]
        assert torch.allclose(w, d2 * e1 + (1 - d2) * plain[1][k], atol=1e-6), k
    assert not all(torch.equal(state[k], plain[1][k]) for k in state)


def test_training_leaves_global_rng_alone(data):
    imgs, masks, _, _ = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_segmenter(frames_to_input(imgs[:4], 32), labels_to_target(masks[:4], 32), ("bg", "head"), TINY,
                    SegmenterTrainConfig(steps=1, batch_size=2), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_checkpoint_round_trip(tmp_path, data, trained):
    _, _, test_imgs, _ = data
    ckpt = save_segmenter(trained, tmp_path / "seg")
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "segmenter.json"]
    meta = json.loads((ckpt / "segmenter.json").read_text())
    assert meta["classes"] == ["background", "head"] and meta["image_size"] == 32
    assert meta["config"]["note"] == "kept" and meta["config"]["model"]["channels"] == [8, 16, 32]
    loaded = load_segmenter(ckpt)
    sa, sb = trained.model.state_dict(), loaded.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for p, q in zip(predict_proba(trained, list(test_imgs)), predict_proba(loaded, list(test_imgs))):
        np.testing.assert_array_equal(p, q)
    assert loaded.info["loss_history"] == trained.info["loss_history"]
    assert not list(tmp_path.glob(".seg.tmp-*"))  # no temporary leftovers


def test_bad_checkpoints_raise_one_sentence(tmp_path, trained):
    with pytest.raises(SonoshiftError, match="must be a folder"):
        load_segmenter(tmp_path / "missing")
    ckpt = save_segmenter(trained, tmp_path / "seg")
    meta = json.loads((ckpt / "segmenter.json").read_text())
    meta["classes"] = ["a", "b", "c"]  # 3 output channels no longer fit the stored weights
    (ckpt / "segmenter.json").write_text(json.dumps(meta))
    with pytest.raises(SonoshiftError, match="do not fit"):
        load_segmenter(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SonoshiftError, match="are damaged"):  # the checksum in segmenter.json catches it first
        load_segmenter(ckpt)


def test_frames_to_input_matches_opencv_and_range():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    x = frames_to_input([frame, np.full((16, 16), 255, np.uint8)], 16)
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32
    ref = cv2.resize(frame, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(x[0, 0].numpy(), ref, atol=1e-6)
    assert torch.all(x[1] == 1.0)
    with pytest.raises(SonoshiftError, match="single-channel"):
        frames_to_input([np.zeros((4, 4, 3), np.uint8)], 4)


def test_predict_returns_each_frame_at_its_own_size(trained):
    frames = [np.zeros((20, 50), np.uint8), np.zeros((64, 33), np.uint8)]
    preds = predict(trained, frames)
    assert [p.shape for p in preds] == [(20, 50), (64, 33)]
    assert all(p.dtype == np.uint8 and p.max() < 2 for p in preds)


def test_augment_keeps_images_and_labels_aligned():
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(16, 8, 8, dtype=torch.long)
    y[:, 1:4, 2:7] = 1
    x = (y[:, None].float() * 2 - 1) * 0.5
    cfg = SegmenterTrainConfig(hflip=True, vflip=True, intensity_jitter=0.0, noise_std=0.0)
    xa, ya = augment(x, y, cfg, g)
    assert torch.equal((xa[:, 0] > 0).long(), ya)
    assert not torch.equal(ya, y)  # some flips happened (16 draws)
    cfg = SegmenterTrainConfig(hflip=False, intensity_jitter=0.5, noise_std=0.3)
    xa, ya = augment(x, y, cfg, g)
    assert torch.equal(ya, y) and xa.min() >= -1 and xa.max() <= 1


@pytest.mark.parametrize("width", [30.0, 120.0])
def test_shadow_wedge_darkens_one_wedge_about_the_centre_and_leaves_the_labels(width):
    g = torch.Generator().manual_seed(1)
    x = torch.full((32, 1, 41, 41), 0.6)  # level 0.8 on [0, 1]
    gain = ((shadow_wedge(x, 1.0, width, g) + 1) / 2 / 0.8)[:, 0]
    rows, cols = np.mgrid[-20:21, -20:21]
    angle = np.degrees(np.arctan2(rows, cols))
    ring = (np.hypot(rows, cols) > 6) & (np.hypot(rows, cols) < 20)  # away from the centre's few pixels
    for k in range(len(x)):
        dark = (gain[k].numpy() < 1 - 1e-6) & ring
        assert dark.any() and gain[k].min() <= 0.5 + 1e-6  # the core is at the drawn factor, in [0, 0.5]
        a = np.sort(angle[dark])
        gaps = np.diff(np.concatenate([a, a[:1] + 360]))  # the circle minus the largest gap = the wedge's span
        assert 360 - gaps.max() <= width + 3  # never wider than the configured width (plus pixel quantization)
        assert torch.all(gain[k][torch.from_numpy(~dark & ring)] == 1.0)
    assert torch.equal(shadow_wedge(x, 0.0, width, g), x)  # probability 0: unchanged
    y = torch.zeros(4, 8, 8, dtype=torch.long)
    y[:, 2:6, 2:6] = 1
    cfg = SegmenterTrainConfig(hflip=False, intensity_jitter=0.0, noise_std=0.0, shadow=1.0)
    xa, ya = augment(torch.full((4, 1, 8, 8), 0.2), y, cfg, g)
    assert torch.equal(ya, y) and xa.min() < 0.2 and xa.max() <= 0.2 + 1e-6


def test_bad_training_inputs(data):
    imgs, masks, _, _ = data
    x, y = frames_to_input(imgs[:4], 32), labels_to_target(masks[:4], 32)
    with pytest.raises(SonoshiftError, match="outside 0..1"):
        train_segmenter(x, y * 2, ("bg", "head"), TINY, FAST, progress=False)
    with pytest.raises(SonoshiftError, match="divisible"):
        train_segmenter(frames_to_input(imgs[:4], 30), labels_to_target(masks[:4], 30), ("bg", "head"), TINY, FAST,
                        progress=False)
    with pytest.raises(SonoshiftError, match="len\\(strides\\)"):
        train_segmenter(x, y, ("bg", "head"), ModelConfig(channels=(4, 8), strides=(2, 2)), FAST, progress=False)
