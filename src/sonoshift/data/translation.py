"""The data side of a translation run: which domains of a prepared dataset a translator learns between."""

from __future__ import annotations

from dataclasses import dataclass

from sonoshift.config import PosInt, Validated


@dataclass(frozen=True)
class TranslationData(Validated):
    """Which prepared-dataset domains play A (source) and B (target), from which split; ``size`` None keeps
    the prepared size, else frames are resized on the fly (YAML section ``data:`` of every translator)."""

    source_domain: str = "handheld"
    target_domain: str = "cart"
    split: str = "train"
    size: PosInt | None = None


def unpaired_frames(data, d: TranslationData, seed: int):
    """The unpaired source/target training set of ``d`` in the prepared dataset ``data`` (items {"source",
    "target"}: float32 (1, H, W) in [-1, 1]); see ``sonoshift.data.datasets.UnpairedDataset``."""
    from sonoshift.data.datasets import UnpairedDataset

    return UnpairedDataset(data, d.split, d.source_domain, d.target_domain, seed=seed, size=d.size)


__all__ = ["TranslationData", "unpaired_frames"]
