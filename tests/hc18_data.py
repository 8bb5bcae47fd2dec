"""A tiny HC18-shaped folder (bright ellipses on grey, filled annotation masks, official HC) for the GA tests."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sonoshift.biometry.ellipse import ellipse_perimeter


def head_image(h, w, a, b, angle=0.0):
    """A bright filled ellipse (grey 220) on grey 30, centred in an (h, w) uint8 image."""
    img = np.full((h, w), 30, np.uint8)
    cv2.ellipse(img, ((w / 2, h / 2), (2 * a, 2 * b), angle), 220, -1)
    return img


@pytest.fixture(scope="session")
def fake_hc18(tmp_path_factory):
    """An HC18-shaped folder whose official HC is the perimeter of the mask's ellipse shrunk by 1 px."""
    root = tmp_path_factory.mktemp("hc18") / "hc18"
    (root / "training_set").mkdir(parents=True)
    rng = np.random.default_rng(0)
    recs = []
    for i in range(12):
        a, b = rng.uniform(25, 35), rng.uniform(15, 24)
        img = head_image(80, 96, a, b, rng.uniform(0, 180))
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        mask = (img > 100).astype(np.uint8) * 255
        name = f"{i:03d}_HC.png"
        Image.fromarray(img).save(root / "training_set" / name)
        Image.fromarray(mask).save(root / "training_set" / name.replace(".png", "_Annotation.png"))
        recs.append({"filename": name, "pixel size(mm)": 0.2, "head circumference (mm)": 0.2 * ellipse_perimeter(a - 1, b - 1)})
    pd.DataFrame(recs).to_csv(root / "included_subset.csv", index=False)
    return root
