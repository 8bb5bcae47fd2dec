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

    The result is stored in the marker, so a skipped stage returns what it returned when it ran.
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
            log.entries[name] = {"status": "reused", "seconds": 0.0, "result": done.get("result")}
            return done.get("result")
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    atomic_write_text(marker, json.dumps({"key": digest, "seconds": seconds, "result": result}, default=str))
    console.print(f"[green]✓[/green] {name}: {seconds:.1f} s")
    log.entries[name] = {"status": "ran", "seconds": seconds, "result": result}
    return result
