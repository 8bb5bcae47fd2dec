"""What every checkpoint records about the data it was trained on, whatever the method (the engine's stamp).

`harmonize` on raw files needs the field-of-view crop and the resize the training frames went through; the
report and the checks need the domains and which dataset it was. The engine writes this into the ``metadata``
of every checkpoint, so a method cannot forget it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

STAMP_VERSION = 1  # metadata["stamp"]; checkpoints without it predate the engine's stamp (sonoshift <= 0.x)
PREPARE_KEYS = ("crop", "resize")


def dataset_stamp(data: str | Path, config_name: str | None = None) -> dict[str, Any]:
    """The stamp of the prepared dataset folder ``data``: ``prepare`` (its crop and resize settings),
    ``domains``, ``dataset`` (absolute path), ``data_hash`` (sha256 of its dataset.json), ``config_name`` and
    ``stamp`` (the stamp version). A dataset.json that cannot be read gives an empty ``prepare``."""
    data = Path(data)
    meta_path = data / "dataset.json"
    try:
        raw = meta_path.read_bytes()
        info = json.loads(raw)
    except (OSError, json.JSONDecodeError):
        raw, info = b"", {}
    prep = info.get("config") or {}
    return {
        "stamp": STAMP_VERSION,
        "prepare": {k: prep[k] for k in PREPARE_KEYS if k in prep},
        "domains": list(info.get("domains") or []),
        "dataset": str(data.resolve()),
        "data_hash": hashlib.sha256(raw).hexdigest() if raw else None,
        "config_name": config_name,
    }


def prepare_of(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The crop/resize settings a checkpoint was trained with: its stamp, else (checkpoints written before the
    stamp) the dataset.json it names when that still exists; None when neither is available."""
    if "prepare" in metadata:
        return dict(metadata["prepare"] or {})
    ds = metadata.get("dataset")
    if ds and (Path(ds) / "dataset.json").is_file():
        return dataset_stamp(ds)["prepare"]
    return None


__all__ = ["PREPARE_KEYS", "STAMP_VERSION", "dataset_stamp", "prepare_of"]
