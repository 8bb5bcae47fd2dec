"""The metrics on real fetal ultrasound (HC18 head images and masks) against scikit-image / numpy references."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sonoshift.metrics import dice, pair_metrics

pytestmark = pytest.mark.realdata


def _load(shared_data: Path, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    files = sorted((shared_data / "hc18" / "training_set").glob("*_HC.png"))[:n]
    if len(files) < n:
        pytest.skip("HC18 images are absent from the shared data folder")
    imgs, masks = [], []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        ann = cv2.imread(str(f).replace("_HC.png", "_HC_Annotation.png"), cv2.IMREAD_GRAYSCALE)
        imgs.append(cv2.resize(img, (128, 96), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(ann, (128, 96), interpolation=cv2.INTER_NEAREST) > 127)
    return np.stack(imgs).astype(np.float64) / 255, np.stack(masks)


def test_pair_metrics_on_real_frames_match_skimage(shared_data: Path) -> None:
    a, _ = _load(shared_data)
    b = np.round(np.clip(gaussian_filter(a, (0, 1.0, 1.0)) * 0.9 + 0.05, 0, 1) * 255) / 255  # a "translation"
    got = pair_metrics(torch.tensor(a).float(), torch.tensor(b).float())
    for i in range(len(a)):
        ssim = structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=1)  # fmt: skip
        assert got["ssim"][i].item() == pytest.approx(ssim, abs=1e-4)
        assert got["psnr"][i].item() == pytest.approx(peak_signal_noise_ratio(a[i], b[i], data_range=1), abs=1e-4)
        p = np.histogram(a[i], 256, (0, 1))[0] / a[i].size
        q = np.histogram(b[i], 256, (0, 1))[0] / b[i].size
        assert got["bc"][i].item() == pytest.approx(np.sqrt(p * q).sum(), abs=1e-6)


def test_dice_on_real_head_masks(shared_data: Path) -> None:
    _, m = _load(shared_data, n=2)
    shifted = np.roll(m, 3, axis=2)
    ref = [2 * (x & y).sum() / (x.sum() + y.sum()) for x, y in zip(m, shifted)]
    got = dice(torch.tensor(shifted.astype(np.int64)), torch.tensor(m.astype(np.int64)), num_classes=2)[:, 0]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
