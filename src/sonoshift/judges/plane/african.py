"""Who may see the African images: one rule for every caller.

The African five-centre images in ``../shared/data/african_planes`` are split patient-wise *within each centre*
into an ``adaptation`` part (its images may be used without labels: to train a translator or a synthesizer) and
a ``test`` part that nothing is trained, tuned or selected on. The split is drawn by :func:`draw_african_split`
(seeded; content-duplicate images removed first, as the data loader does) and was written once to
``african_split.json`` next to this file; every caller reads that file through :func:`african_split`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sonoshift.errors import SonoshiftError

SPLIT_FILE = Path(__file__).with_name("african_split.json")
PARTS = ("adaptation", "test")
TEST_FRACTION = 0.5
SEED = 0


def draw_african_split(data_root: str | Path, *, test_fraction: float = TEST_FRACTION, seed: int = SEED) -> dict:
    """Draw the rule from the data: ``{centre: {"adaptation": [patient...], "test": [...]}, "seed", "test_fraction"}``.

    Patients are ``<Center>-<Patient_num>`` (as in ``african_planes_spec``); per centre the sorted ids are
    permuted by ``numpy.random.default_rng([seed, *centre bytes])`` and the first round(n * test_fraction) (at
    least 1) are the test part.
    """
    from sonoshift.data.public import african_planes_spec

    spec = african_planes_spec(data_root)
    by_centre: dict[str, set[str]] = {}
    for item in spec.items:
        by_centre.setdefault(item.domain, set()).add(str(item.patient_id))
    out: dict = {}
    for centre in sorted(by_centre):
        ids = sorted(by_centre[centre])
        perm = np.random.default_rng([seed, *centre.encode("utf-8")]).permutation(len(ids))
        n_test = max(1, int(round(len(ids) * test_fraction)))
        test = sorted(ids[i] for i in perm[:n_test])
        out[centre] = {"adaptation": sorted(set(ids) - set(test)), "test": test}
    out["seed"] = int(seed)
    out["test_fraction"] = float(test_fraction)
    return out


def check_african_split(split: dict, where: str = str(SPLIT_FILE)) -> None:
    """Raise when a patient is in both parts or in two centres."""
    seen: dict[str, str] = {}
    for centre, parts in split.items():
        if centre in ("seed", "test_fraction"):
            continue
        for part in PARTS:
            for pid in parts.get(part, []):
                if pid in seen:
                    raise SonoshiftError(f"{where}: African patient {pid!r} is in {seen[pid]} and {centre}/{part}.")
                seen[pid] = f"{centre}/{part}"


def african_split(path: str | Path = SPLIT_FILE) -> dict:
    """The written rule (default: the project's ``african_split.json``), checked for overlap."""
    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"African split file {path} does not exist.")
    split = json.loads(path.read_text(encoding="utf-8"))
    check_african_split(split, str(path))
    return split


def african_part(part: str, split: dict | None = None) -> set[str]:
    """Patient ids of one part (``adaptation`` or ``test``) over all centres."""
    if part not in PARTS:
        raise SonoshiftError(f"unknown African part {part!r} (known: {', '.join(PARTS)}).")
    split = split if split is not None else african_split()
    return {p for c, parts in split.items() if isinstance(parts, dict) for p in parts[part]}


def in_part(patients: Iterable[str], part: str, split: dict | None = None) -> np.ndarray:
    """Boolean mask: which of ``patients`` belong to ``part``."""
    keep = african_part(part, split)
    return np.array([str(p) in keep for p in patients], dtype=bool)


def without_test_part(samples, what: str, split: dict | None = None):
    """``samples`` (judges.plane.data.Samples) without the frames of African test-part patients, saying how many
    were left out (one console line; nothing said when there are none). Every training or selection path of the
    plane classifier goes through this: the African test part is only ever scored."""
    from sonoshift.progress import console

    test = in_part(samples.patients, "test", split)
    if test.any():
        console.print(f"{what}: {int(test.sum())} frames of {len(set(np.array(samples.patients)[test]))} African "
                      "test-part patients left out (the African rule: the test part is never trained, tuned or "
                      "selected on).")
    return samples.subset(~test)
