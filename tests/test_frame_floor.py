"""Frame harmonization never silently cuts every cine-loop to the length of one still image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prep_synth import make_video
from sonoshift.config import load_config
from sonoshift.data.frame_select import FrameConfig, equalize_frame_counts, target_count
from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.errors import SonoshiftError


def test_floor_names_the_short_video() -> None:
    with pytest.raises(SonoshiftError, match=r"input b/still.png has only 1 frame\(s\).*frames.min_frames=1"):
        target_count([8, 1, 6], FrameConfig(), ["a.mp4", "b/still.png", "c.mp4"])
    assert target_count([8, 1, 6], FrameConfig(min_frames=1)) == 1  # accepted when asked for
    assert target_count([1, 1, 1], FrameConfig()) == 1  # a folder of stills cuts nothing
    assert target_count([8, 3], FrameConfig()) == 3
    sel = equalize_frame_counts({"a": 8, "b": 1}, FrameConfig(mode="all"))
    assert len(sel["a"]) == 8 and len(sel["b"]) == 1


def test_prepare_refuses_a_one_pixel_still_among_cine_loops(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / "in" / d).mkdir(parents=True)
        for p in range(4):
            np.save(tmp_path / "in" / d / f"{d}{p}.npy", make_video(5, seed=p))
    still = tmp_path / "in" / "a" / "a9.png"
    Image.fromarray(np.full((1, 1), 80, np.uint8)).save(still)
    cfg = load_config(PrepareConfig, None, ["crop.method=none", "split.fractions=[0.6,0.2,0.2]"])
    with pytest.raises(SonoshiftError, match=rf"input {still} has only 1 frame\(s\)"):
        prepare([tmp_path / "in" / "a", tmp_path / "in" / "b"], tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
