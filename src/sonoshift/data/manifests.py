"""Manifests (one CSV per split) and the paper's pair CSV (docs/formats.md section 2)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sonoshift.atomic import atomic_write_text
from sonoshift.errors import SonoshiftError

BASE_COLUMNS = (
    "patient_id",
    "domain",
    "video_id",
    "frame_index",
    "path",
    "mask_path",
    "plane",
    "ga_weeks",
    "label_path",
)
PAIR_COLUMNS = ("source_domain", "target_domain", "source_path", "target_path")


def manifest_columns(rows: Iterable[Mapping[str, object]]) -> list[str]:
    """Columns in contract order: the base columns, then ``*_path`` columns (sorted), then other labels (sorted)."""
    extra = set()
    for r in rows:
        extra.update(k for k in r if k not in BASE_COLUMNS)
    paths = sorted(k for k in extra if k.endswith("_path"))
    labels = sorted(k for k in extra if not k.endswith("_path"))
    return [*BASE_COLUMNS, *paths, *labels]


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else repr(float(v))  # shortest round-trip text, also for numpy floats
    if isinstance(v, np.generic):
        return str(v.item())
    return str(v)


def rows_to_csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """CSV text for ``rows`` with ``columns`` (missing cells empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def write_manifest(path: str | Path, rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Write one manifest CSV atomically; returns the columns written."""
    cols = manifest_columns(rows)
    atomic_write_text(path, rows_to_csv(rows, cols))
    return cols


def read_csv_rows(path: str | Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts of strings; raises SonoshiftError when the file or a required column is missing."""
    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"CSV file {path} does not exist.")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in required if c not in cols]
        if missing:
            raise SonoshiftError(f"CSV file {path} lacks the column {missing[0]!r}.")
        return [dict(r) for r in reader]


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV (strings; empty string = unknown)."""
    return read_csv_rows(path, BASE_COLUMNS)


def ga_weeks_of(row: Mapping[str, object], manifest: str | Path) -> float:
    """A manifest row's ``ga_weeks`` as a float (NaN when empty, i.e. unknown); a value that is not a number
    raises SonoshiftError naming ``manifest`` (older datasets were prepared without checking the label)."""
    ga = row.get("ga_weeks", "") or ""
    try:
        return float(ga) if ga else float("nan")
    except (TypeError, ValueError):
        raise SonoshiftError(
            f"manifest {manifest} has a ga_weeks value that is not a number ({str(ga)!r}, patient "
            f"{row.get('patient_id', '?')!r}); fix it or prepare the dataset again."
        ) from None


def read_pairs(path: str | Path) -> list[dict[str, str]]:
    """Rows of a pair CSV."""
    return read_csv_rows(path, PAIR_COLUMNS)


def strip_domain(video_id: str, domain: str) -> str:
    """``video_id`` without the domain name as a ``_ - .``-separated token (``p01_sweep1_cart`` -> ``p01_sweep1``)."""
    tok = re.escape(domain)
    out = re.sub(rf"(^|[_.\-]){tok}(?=$|[_.\-])", "", video_id)
    return out.strip("_.-") or video_id


def build_pairs(
    source_rows: Sequence[Mapping[str, object]],
    target_rows: Sequence[Mapping[str, object]],
    seed: int = 0,
) -> list[dict[str, str]]:
    """The pair list source -> target of one split.

    When every source frame has a target frame with the same (patient_id, video id without domain, frame_index)
    they are paired (simulated data); otherwise sources sorted by path are matched with the target paths sorted,
    shuffled by a generator seeded with ``seed`` and cycled to the source length. Deterministic.
    """
    if not source_rows or not target_rows:
        return []
    sd = str(source_rows[0]["domain"])
    td = str(target_rows[0]["domain"])

    def key(r: Mapping[str, object], d: str) -> tuple[str, str, int]:
        return (str(r["patient_id"]), strip_domain(str(r["video_id"]), d), int(r["frame_index"]))

    sources = sorted(source_rows, key=lambda r: str(r["path"]))
    by_key = {key(r, td): str(r["path"]) for r in target_rows}
    matched = [by_key.get(key(r, sd)) for r in sources]
    if all(m is not None for m in matched):
        targets = matched
    else:
        tpaths = sorted(str(r["path"]) for r in target_rows)
        perm = np.random.default_rng([int(seed), len(tpaths)]).permutation(len(tpaths))
        targets = [tpaths[perm[i % len(tpaths)]] for i in range(len(sources))]
    return [
        {"source_domain": sd, "target_domain": td, "source_path": str(s["path"]), "target_path": t}
        for s, t in zip(sources, targets)
    ]


def write_pairs(path: str | Path, pairs: Sequence[Mapping[str, object]]) -> None:
    """Write a pair CSV atomically."""
    atomic_write_text(path, rows_to_csv(pairs, PAIR_COLUMNS))
