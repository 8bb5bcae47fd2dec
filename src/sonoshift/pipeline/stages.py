"""Resumable stages: a stage that finished once is skipped next time unless its inputs changed or --force.

A finished stage leaves ``<out>/.stages/<name>.json`` holding the stage's key (a JSON-able description of what
it was asked to do) and what it reported. The marker is written only after the stage returned, so a stage that
crashed or was interrupted runs again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonoshift.atomic import atomic_write_text
from sonoshift.progress import console


def stage_key(obj: Any) -> str:
    """A short stable hash of a JSON-able description of a stage's inputs and settings."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def path_key(path: str | Path, root: str | Path) -> str:
    """``path`` as it goes into a stage key, independent of the working directory: relative to ``root`` when
    inside it (so a run folder can be moved), else absolute."""
    p, r = Path(path).resolve(), Path(root).resolve()
    try:
        return p.relative_to(r).as_posix()
    except ValueError:
        return p.as_posix()


ROOT_TOKEN = "${stage_root}"  # stands for the stage's folder in a stored result, so a run folder can be moved


def _root_forms(root: Path) -> list[str]:
    """The spellings of ``root`` a stored path may start with (as given, absolute, resolved), longest first."""
    forms = {root.as_posix(), root.absolute().as_posix(), root.resolve().as_posix()}
    return sorted((f.rstrip("/") for f in forms if f not in ("", ".")), key=len, reverse=True)


def portable_result(obj: Any, root: Path) -> Any:
    """``obj`` with every string that is a path inside ``root`` written as ``ROOT_TOKEN/...`` (in dicts and lists,
    recursively); other values unchanged."""
    if isinstance(obj, str):
        for form in _root_forms(root):
            if obj == form or obj.startswith(form + "/"):
                return ROOT_TOKEN + obj[len(form):]
        return obj
    if isinstance(obj, dict):
        return {k: portable_result(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_result(v, root) for v in obj]
    return obj


def local_result(obj: Any, root: Path) -> Any:
    """The inverse of ``portable_result`` for the folder ``root`` the stage is in now."""
    if isinstance(obj, str):
        return root.as_posix() + obj[len(ROOT_TOKEN):] if obj.startswith(ROOT_TOKEN) else obj
    if isinstance(obj, dict):
        return {k: local_result(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [local_result(v, root) for v in obj]
    return obj


@dataclass
class StageLog:
    """What ran: stage name -> {"status": "ran" | "reused", "seconds": float, "result": ...}."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


def marker_path(root: Path, name: str) -> Path:
    """Where the finished-stage marker of ``name`` lives."""
    return root / ".stages" / f"{name.replace('/', '_')}.json"


def is_stale(name: str, root: Path, key: Any) -> bool:
    """True when ``name`` finished before with other settings (its outputs must be rebuilt, not resumed)."""
    marker = marker_path(root, name)
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("key") != stage_key(key)
    except (OSError, json.JSONDecodeError):
        return True


def run_stage(
    name: str,
    root: Path,
    key: Any,
    fn: Callable[[], Any],
    *,
    force: bool,
    log: StageLog,
) -> Any:
    """Run ``fn`` unless ``root/.stages/<name>.json`` records the same ``key``; return fn's (JSON-able) result.

    The result is stored in the marker, so a skipped stage returns what it returned when it ran; paths inside
    ``root`` are stored relative to it, so a run folder moved or copied elsewhere returns paths in its new place.
    """
    marker = marker_path(root, name)
    digest = stage_key(key)
    if not force and marker.is_file():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            done = {}
        if done.get("key") == digest:
            console.print(f"[green]✓[/green] {name}: done earlier, reused ({marker.parent.parent})")
            result = local_result(done.get("result"), root)
            log.entries[name] = {"status": "reused", "seconds": 0.0, "result": result}
            return result
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    stored = portable_result(json.loads(json.dumps(result, default=str)), root)  # paths inside root: movable
    atomic_write_text(marker, json.dumps({"key": digest, "seconds": seconds, "result": stored}))
    console.print(f"[green]✓[/green] {name}: {seconds:.1f} s")
    log.entries[name] = {"status": "ran", "seconds": seconds, "result": result}
    return result
