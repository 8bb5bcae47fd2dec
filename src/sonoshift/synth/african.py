"""The African rule for the synthesizer (``judges.plane.african``): the African test part is never trained,
tuned or selected on.

Two guards: :func:`african_prepare_splits` makes the ``splits.json`` for ``sonoshift prepare --public
african_planes split.file=...`` that puts every test-part patient in ``test`` and draws the adaptation part into
``train`` / ``val``; :func:`drop_african_test` removes test-part frames from any training or selection rows, so a
dataset prepared with an ordinary random split cannot leak them either.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sonoshift.judges.plane.african import african_split, check_african_split, in_part

AFRICAN_DATASET = "african_planes"


def african_prepare_splits(split: dict | None = None, *, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """A prepared-dataset split (``{centre: {"train", "val", "test"}, "seed"}``) following the African rule
    ``split`` (default: the project's ``african_split.json``): test part -> ``test``; per centre the sorted
    adaptation patients are permuted by ``numpy.random.default_rng([seed, 1, *centre bytes])`` and the first
    round(n * val_fraction) (at least 1 when n >= 2 and val_fraction > 0) go to ``val``, the rest to ``train``."""
    split = split if split is not None else african_split()
    check_african_split(split)
    out: dict = {}
    for centre, parts in sorted(split.items()):
        if not isinstance(parts, dict):
            continue
        ada = sorted(parts["adaptation"])
        perm = np.random.default_rng([seed, 1, *centre.encode("utf-8")]).permutation(len(ada))
        n_val = int(round(len(ada) * val_fraction))
        if val_fraction > 0 and len(ada) >= 2:
            n_val = min(max(1, n_val), len(ada) - 1)
        val = sorted(ada[i] for i in perm[:n_val])
        out[centre] = {"train": sorted(set(ada) - set(val)), "val": val, "test": sorted(parts["test"])}
    out["seed"] = int(seed)
    return out


def african_test_mask(dataset: str, patients: Sequence[str], split: dict | None = None) -> np.ndarray:
    """Boolean mask over ``patients`` of dataset ``dataset`` (its ``dataset.json`` name): True for the
    African test part (always False for other datasets)."""
    if dataset != AFRICAN_DATASET:
        return np.zeros(len(patients), dtype=bool)
    return in_part(patients, "test", split)


__all__ = ["AFRICAN_DATASET", "african_prepare_splits", "african_test_mask"]
