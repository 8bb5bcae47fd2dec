"""Anatomy classes for the segmenter: read the simulator's class names and merge them into a few groups.

The simulator names its anatomy classes in ``labels.json``; the segmenter predicts a handful of clinically
meaningful groups (e.g. fluid, placenta, fetal head, fetal body). A group is a list of fnmatch patterns over the
lower-case class names (or class ids written as integers); a class joins the first group (in order) with a
matching pattern, so specific groups can precede broad ones. The first group is the background and also takes
every class no pattern claims. An empty mapping keeps the simulator's classes as they are.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonoshift.errors import SonoshiftError


def parse_label_names(data: Any, source: str) -> dict[int, str]:
    """Class id -> name from the usual JSON shapes: {"0": "bg"}, {"bg": 0}, ["bg", ...], [{"id":0,"name":"bg"}].

    A top-level {"classes"|"labels": ...} wrapper is unwrapped. ``source`` names the file in errors.
    """
    if isinstance(data, Mapping):
        for key in ("classes", "labels"):
            if key in data and isinstance(data[key], (Mapping, list)):
                return parse_label_names(data[key], source)
    out: dict[int, str] = {}
    try:
        if isinstance(data, list):
            for i, item in enumerate(data):
                if isinstance(item, Mapping):
                    out[int(item["id"])] = str(item["name"])
                else:
                    out[i] = str(item)
        elif isinstance(data, Mapping):
            for k, v in data.items():
                if isinstance(v, Mapping):  # {"skull": {"id": 3, ...}} or {"3": {"name": "skull"}}
                    if "id" in v:
                        out[int(v["id"])] = str(k)
                    else:
                        out[int(k)] = str(v["name"])
                elif str(k).lstrip("-").isdigit():
                    out[int(k)] = str(v)
                else:
                    out[int(v)] = str(k)
        else:
            raise TypeError(type(data).__name__)
    except (KeyError, TypeError, ValueError) as e:
        raise SonoshiftError(f"label names file {source} has an unexpected layout ({e}).") from None
    if any(not 0 <= i < 256 for i in out):
        raise SonoshiftError(f"label names file {source} has class ids outside 0..255.")
    return out


def find_labels_json(dataset_dir: str | Path) -> Path | None:
    """``labels.json`` in the prepared dataset, else in any folder named by a path in its ``dataset.json``."""
    root = Path(dataset_dir)
    if (root / "labels.json").is_file():
        return root / "labels.json"
    meta = root / "dataset.json"
    if not meta.is_file():
        return None
    try:
        tree = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None

    def strings(x: Any) -> list[str]:
        if isinstance(x, str):
            return [x]
        if isinstance(x, Mapping):
            return [s for v in x.values() for s in strings(v)]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return []

    # A value may be a bare path or a phrase holding one ("dataset spec /x/sonoshift_spec.yaml").
    for s in strings(tree):
        if len(s) > 1000 or "\n" in s:
            continue
        for token in dict.fromkeys([s, *s.split()]):
            p = Path(token) if Path(token).is_absolute() else root / token
            for cand in (p / "labels.json", p.parent / "labels.json"):
                try:
                    if cand.is_file():
                        return cand
                except OSError:
                    continue
    return None


def read_label_names(path: str | Path) -> dict[int, str]:
    """Read a ``labels.json`` file into class id -> name."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SonoshiftError(f"label names file {path} cannot be read ({e.__class__.__name__}).") from None
    return parse_label_names(data, str(path))


def class_lookup(
    groups: Mapping[str, Sequence[Any]], names: Mapping[int, str]
) -> tuple[tuple[str, ...], np.ndarray]:
    """Merged class names and a 256-entry uint8 lookup table (source id -> merged id).

    ``groups``: ordered {merged name: [pattern or id, ...]}; the first is the background (id 0). Patterns are
    fnmatch globs on lower-case names; ints (or digit strings) are ids. A source id goes to the first group that
    matches it. With empty ``groups`` every named id keeps its own class (ids must then run 0..K-1).
    """
    if not groups:
        ids = sorted(names) or [0, 1]
        if ids != list(range(len(ids))):
            raise SonoshiftError(f"label ids {ids} are not 0..K-1; give class groups to merge them.")
        lut = np.zeros(256, dtype=np.uint8)
        lut[ids] = np.arange(len(ids), dtype=np.uint8)
        return tuple(names.get(i, f"class_{i}") for i in ids), lut
    lut = np.zeros(256, dtype=np.uint8)
    claimed: dict[int, str] = {}
    merged = list(groups)
    for gi, gname in enumerate(merged):
        for pat in groups[gname] or ():
            if isinstance(pat, int) or (isinstance(pat, str) and pat.isdigit()):
                hits = [int(pat)]
            else:
                hits = [i for i, n in names.items() if fnmatch.fnmatch(n.lower(), str(pat).lower())]
            for i in hits:
                if i not in claimed:
                    claimed[i] = gname
                    lut[i] = gi
    return tuple(merged), lut
