"""data/cache.py load_fov: the packed masks when the domain has them, else its frames (non-black pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonoshift.data.cache import cache_path, load_fov
from sonoshift.errors import SonoshiftError


def test_load_fov_reads_the_masks_or_falls_back_to_the_frames(tmp_path: Path) -> None:
    frames = np.array([[[0, 7], [9, 0]]], dtype=np.uint8)
    masks = np.array([[[255, 255], [0, 0]]], dtype=np.uint8)
    cache_path(tmp_path, "train", "cart").parent.mkdir(parents=True)
    np.save(cache_path(tmp_path, "train", "cart"), frames)
    np.testing.assert_array_equal(load_fov(tmp_path, "train", "cart") > 0, [[[False, True], [True, False]]])
    np.save(cache_path(tmp_path, "train", "cart", "mask"), masks)
    np.testing.assert_array_equal(load_fov(tmp_path, "train", "cart") > 0, [[[True, True], [False, False]]])
    with pytest.raises(SonoshiftError, match="does not exist"):
        load_fov(tmp_path, "train", "handheld")
