"""Patient-wise splits: 70/15/15 inside each domain, seeded, written once to splits.json, checked on read."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sonoshift.atomic import atomic_write_text
from sonoshift.config import Seed, UnitFloat, Validated
from sonoshift.errors import SonoshiftError

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class SplitConfig(Validated):
    """Fractions of patients per split (train, val, test; they must sum to 1; 0 leaves a split empty), the
    seed, and an optional existing splits.json to reuse instead of drawing a new split."""

    fractions: tuple[UnitFloat, UnitFloat, UnitFloat] = (0.7, 0.15, 0.15)
    seed: Seed = 0
    file: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fractions(self.fractions)


def check_fractions(fractions: Sequence[float], key: str = "split fractions") -> None:
    """Raise unless ``fractions`` are three non-negative numbers summing to 1 with a training share > 0."""
    f = [float(x) for x in fractions]
    if len(f) != 3 or any(x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6 or f[0] <= 0:
        raise SonoshiftError(
            f"{key} {tuple(fractions)} must be three non-negative numbers summing to 1 with train > 0."
        )


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Patients per split for ``n`` patients: val and test get round(n f) but at least 1 when their fraction
    is > 0, train gets the rest. Raises when ``n`` is too small for every non-empty split to get a patient."""
    check_fractions(fractions)
    f = [float(x) for x in fractions]
    need = sum(1 for x in f if x > 0)
    if n < need:
        raise SonoshiftError(f"{n} patient(s) are too few for a {need}-way split (need at least {need}).")
    val = max(1, int(round(n * f[1]))) if f[1] > 0 else 0
    test = max(1, int(round(n * f[2]))) if f[2] > 0 else 0
    while n - val - test < 1:  # keep at least one training patient
        if val >= test and val > 1:
            val -= 1
        else:
            test -= 1
    return n - val - test, val, test


def _draw(ids: list[str], fractions: Sequence[float], key: list[int]) -> dict[str, list[str]]:
    counts = split_counts(len(ids), fractions)
    perm = np.random.default_rng(key).permutation(len(ids))
    shuffled = [ids[i] for i in perm]
    a, b = counts[0], counts[0] + counts[1]
    return {"train": sorted(shuffled[:a]), "val": sorted(shuffled[a:b]), "test": sorted(shuffled[b:])}


def make_splits(
    patients: Mapping[str, Sequence[str]], config: SplitConfig = SplitConfig(), *, joint: bool = False
) -> dict:
    """Draw a split per domain: ``patients`` maps domain -> patient ids. Returns
    ``{domain: {"train": [...], "val": [...], "test": [...]}, "seed": seed}`` with sorted id lists.

    The draw depends only on the seed, the domain name and the sorted patient ids (not their order).
    joint: the domains share patients (paired data): the split is drawn once over all patients and every
    domain keeps the same assignment, so a patient never sits in two splits.
    """
    out: dict = {}
    if joint:
        everyone = sorted({str(p) for ids in patients.values() for p in ids})
        try:
            shared = _draw(everyone, config.fractions, [int(config.seed)])
        except SonoshiftError as e:
            raise SonoshiftError(f"paired domains {', '.join(sorted(patients))}: {e}") from None
        for domain in sorted(patients):
            mine = set(map(str, patients[domain]))
            out[domain] = {s: [p for p in shared[s] if p in mine] for s in SPLITS}
    else:
        for domain in sorted(patients):
            ids = sorted(set(map(str, patients[domain])))
            try:
                out[domain] = _draw(ids, config.fractions, [int(config.seed)] + list(domain.encode("utf-8")))
            except SonoshiftError as e:
                raise SonoshiftError(f"domain {domain!r}: {e}") from None
    out["seed"] = int(config.seed)
    return out


def check_leakage(splits: Mapping, where: str = "splits") -> None:
    """Raise when a patient sits in two different splits (of any domains), naming the patient and both places.

    The same patient in the same split of two domains (paired data) is not leakage.
    """
    seen: dict[str, tuple[str, str]] = {}
    for domain, parts in splits.items():
        if domain == "seed":
            continue
        if not isinstance(parts, Mapping):
            raise SonoshiftError(f"{where}: domain {domain!r} must map split names to patient lists.")
        for split in SPLITS:
            ids = parts.get(split, [])
            if not isinstance(ids, list):
                raise SonoshiftError(f"{where}: {domain!r}/{split} must be a list of patient ids.")
            for pid in ids:
                pid = str(pid)
                if pid in seen and seen[pid][1] != split:
                    d0, s0 = seen[pid]
                    raise SonoshiftError(
                        f"{where}: patient {pid!r} leaks between {d0}/{s0} and {domain}/{split}."
                    )
                seen.setdefault(pid, (domain, split))


def write_splits(path: str | Path, splits: Mapping) -> None:
    """Write ``splits`` as JSON atomically (after a leakage check)."""
    check_leakage(splits, str(path))
    atomic_write_text(path, json.dumps(splits, indent=2, sort_keys=True) + "\n")


def read_splits(path: str | Path) -> dict:
    """Read splits.json and check it for leakage; raises SonoshiftError naming the file and the patient."""
    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"splits file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SonoshiftError(f"splits file {path} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise SonoshiftError(f"splits file {path} must hold a mapping domain -> splits.")
    check_leakage(data, f"splits file {path}")
    return data


def split_of(splits: Mapping, domain: str, patient_id: str) -> str | None:
    """The split name holding ``patient_id`` in ``domain``, or None."""
    parts = splits.get(domain, {})
    for s in SPLITS:
        if patient_id in parts.get(s, []):
            return s
    return None


# ------------------------------------------------------------------- checked at every read of a split


def verify_split(root: str | Path, split: str | None = None) -> dict | None:
    """The leakage check every stage runs when it reads a split of the prepared dataset ``root``.

    splits.json must put no patient in two splits, and ``manifest_<split>.csv`` (when ``split`` is given) must
    list only patients that splits.json puts in ``split``. Returns the splits; None for a folder without
    splits.json that `prepare` did not write (a dataset written by `prepare` without one is refused).
    """
    root = Path(root)
    path = root / "splits.json"
    if not path.is_file():
        try:
            info = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and info.get("fingerprint"):
            raise SonoshiftError(f"prepared dataset {root} has no splits.json, so its splits cannot be checked for "
                                 "leakage; prepare it again.")
        return None
    splits = read_splits(path)
    manifest = root / f"manifest_{split}.csv"
    if split is not None and manifest.is_file():
        from sonoshift.data.manifests import read_manifest

        for row in read_manifest(manifest):
            where = split_of(splits, row["domain"], row["patient_id"])
            if where != split:
                raise SonoshiftError(
                    f"{manifest} lists patient {row['patient_id']!r} of domain {row['domain']!r}, which {path} puts "
                    f"{'in no split' if where is None else f'in {where}'}; the dataset was edited, prepare it again."
                )
    return splits


def patient_hash(patient_id: str) -> str:
    """A short one-way digest of a patient id (checkpoints record these, not the ids)."""
    return hashlib.sha256(str(patient_id).encode("utf-8")).hexdigest()[:16]


def split_hash(splits: Mapping) -> str:
    """sha256 of the patient lists of every domain and split (independent of key and list order)."""
    canon = {d: {s: sorted(map(str, parts.get(s, []))) for s in SPLITS}
             for d, parts in splits.items() if d != "seed" and isinstance(parts, Mapping)}
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode("utf-8")).hexdigest()


def split_record(splits: Mapping, split: str) -> dict:
    """What a checkpoint records about the data it was trained on: the hash of the whole split and the
    (hashed) patients of ``split``, enough to refuse an evaluation on a split that shares patients with it."""
    pats = sorted({patient_hash(p) for d, parts in splits.items() if d != "seed" and isinstance(parts, Mapping)
                   for p in parts.get(split, [])})
    return {"splits_sha256": split_hash(splits), "split": split, "patients": pats}


def shared_patients(record: Mapping, splits: Mapping, split: str) -> list[str]:
    """Patient ids of ``split`` in ``splits`` that a model with the training ``record`` was trained on."""
    seen = set(record.get("patients", []))
    ids = sorted({str(p) for d, parts in splits.items() if d != "seed" and isinstance(parts, Mapping)
                  for p in parts.get(split, [])})
    return [p for p in ids if patient_hash(p) in seen]
