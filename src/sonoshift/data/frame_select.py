"""Frame-count equalization: every video contributes the same number of frames (DESIGN.md section 2, "frame
harmonization"; named so here to keep it apart from image harmonization, ``sonoshift harmonize``)."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sonoshift.config import PosInt, Seed, Validated
from sonoshift.errors import SonoshiftError


@dataclasses.dataclass(frozen=True)
class FrameConfig(Validated):
    """mode "min": every video gives the minimum frame count over all videos; "fixed": every video gives
    ``count`` frames (videos shorter than that are an error); "all": keep every frame. ``seed`` drives sampling.
    ``min_frames``: with mode "min", a shortest video below this many frames is refused when other videos are
    longer (one still image among cine-loops would otherwise cut every loop to one frame)."""

    mode: Literal["min", "fixed", "all"] = "min"
    count: PosInt | None = None
    seed: Seed = 0
    min_frames: PosInt = 2


def target_count(
    lengths: Sequence[int], config: FrameConfig, names: Sequence[str] | None = None
) -> int | None:
    """Frames per video for ``lengths`` (frames in each video) under ``config``; None means "keep all".
    ``names``: the file of each video, for the message when the shortest one is below ``config.min_frames``."""
    if not lengths:
        raise SonoshiftError("frame-count equalization got no videos.")
    if config.mode == "all":
        return None
    if config.mode == "fixed":
        if config.count is None or config.count < 1:
            raise SonoshiftError("frames.count must be a positive integer when frames.mode is 'fixed'.")
        return int(config.count)
    shortest, longest = int(min(lengths)), int(max(lengths))
    if shortest < config.min_frames and longest > shortest:
        i = list(lengths).index(shortest)
        who = f"input {names[i]}" if names is not None else f"video {i}"
        raise SonoshiftError(
            f"{who} has only {shortest} frame(s), so frame harmonization (frames.mode=min) would cut every "
            f"video (the longest has {longest}) to {shortest}; remove it, or accept that with "
            f"frames.min_frames={shortest} (or keep every frame with frames.mode=all)."
        )
    return shortest


def select_frames(length: int, count: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices (int64, increasing) of ``count`` frames drawn without replacement from ``range(length)``.

    ``count`` None or >= ``length`` keeps every frame; temporal order is kept.
    """
    if count is None or count >= length:
        if count is not None and count > length:
            raise SonoshiftError(f"a video has {length} frames but {count} are required.")
        return np.arange(length, dtype=np.int64)
    return np.sort(rng.choice(length, size=count, replace=False)).astype(np.int64)


def video_rng(seed: int, key: str) -> np.random.Generator:
    """A generator for one video, from the global seed and a stable key (so results do not depend on order)."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def equalize_frame_counts(
    lengths: dict[str, int], config: FrameConfig, rng_keys: dict[str, str] | None = None,
    names: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Selected frame indices per video key, given each video's frame count (seeded, order-independent).

    rng_keys: optional video key -> sampling key; videos with the same sampling key and length get the same
    frames (paired domains keep frame-by-frame correspondence). names: video key -> file, for messages.
    """
    count = target_count(list(lengths.values()), config, [names.get(k, k) for k in lengths] if names else None)
    out = {}
    for key, n in lengths.items():
        if count is not None and n < count:
            raise SonoshiftError(f"video {key} has {n} frames, fewer than frames.count={count}.")
        rk = key if rng_keys is None else rng_keys.get(key, key)
        out[key] = select_frames(n, count, video_rng(config.seed, rk))
    return out
