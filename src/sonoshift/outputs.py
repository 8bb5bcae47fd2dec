"""The one output policy of every command that writes where the user points (``--out``).

- An output that does not exist (or an empty folder) is created.
- An output that exists and is this command's own earlier result (same kind, same settings) is reused; with
  ``force`` it is rebuilt and replaced atomically.
- An output that sonoshift wrote as the same kind with other settings is refused, or replaced with ``force``.
- Anything else (a file of the user's, a folder sonoshift did not write, another kind of sonoshift output) is
  refused with one sentence, even with ``force``: sonoshift never deletes what it did not write.

Folder outputs carry a stamp, ``OUT/.sonoshift.json`` (kind and a hash of the settings and inputs). Outputs
written into a shared folder (``harmonize`` on files) are recorded in that folder's ledger,
``OUT/.sonoshift-outputs.json``, one entry per written path. Several outputs that must appear together go
through :func:`all_or_nothing`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sonoshift
from sonoshift.atomic import atomic_write_text, discard, make_temp_dir, make_temp_file, replace_into
from sonoshift.errors import SonoshiftError

STAMP_FILE = ".sonoshift.json"
LEDGER_FILE = ".sonoshift-outputs.json"
Action = Literal["create", "reuse", "replace"]


@dataclass(frozen=True)
class Stamp:
    """What sonoshift wrote at a path: its kind (e.g. "report") and the key of its settings (None: unknown)."""

    kind: str
    key: str | None


def settings_key(obj: Any) -> str:
    """A stable hash of a JSON-able description of what a command was asked to do (settings and inputs)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex). A missing file is one sentence: stage keys digest the outputs of earlier
    stages, so a file that is gone means the run folder was changed or only partly copied."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except FileNotFoundError:
        raise SonoshiftError(f"{path} is missing: the folder it belongs to was changed or only partly copied; "
                             "run again with --force or into a new output folder.") from None
    return h.hexdigest()


def read_stamp(folder: Path) -> Stamp | None:
    """The stamp of an output folder, None when it has none (or an unreadable one)."""
    p = Path(folder) / STAMP_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return Stamp(str(data["kind"]), data.get("key"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stamp(folder: Path, kind: str, key: str) -> None:
    """Stamp ``folder`` (usually the temporary folder before its rename) as a ``kind`` made with ``key``."""
    text = json.dumps({"kind": kind, "key": key, "sonoshift_version": sonoshift.__version__}, indent=1) + "\n"
    atomic_write_text(Path(folder) / STAMP_FILE, text)


def decide(out: Path, kind: str, found: Stamp | None, key: str, force: bool, hint: str = "--out") -> Action:
    """Reuse, replace or refuse an existing sonoshift output ``out`` whose stamp is ``found``."""
    if found is None:
        raise SonoshiftError(
            f"{out} exists and was not written by sonoshift as a {kind}; choose another {hint} (nothing was changed)."
        )
    if found.kind != kind:
        raise SonoshiftError(f"{out} holds a sonoshift {found.kind}, not a {kind}; choose another {hint}.")
    if force:
        return "replace"
    if found.key is not None and found.key == key:
        return "reuse"
    made = "made from other inputs or settings" if found.key is not None else "(its settings are not recorded)"
    raise SonoshiftError(f"{out} already holds a {kind} {made}; pass --force to replace it or choose another {hint}.")


def claim_folder(
    out: str | Path,
    kind: str,
    key: str,
    *,
    force: bool = False,
    legacy: Callable[[Path], Stamp | None] | None = None,
    hint: str = "--out",
) -> Action:
    """Decide what to do with the folder output ``out`` of a ``kind`` command asked for ``key``.

    Returns "create" (absent or an empty folder), "reuse" (the same result is there) or "replace" (``force``
    and a sonoshift ``kind`` is there); raises SonoshiftError otherwise. ``legacy`` recognizes outputs written
    before stamps existed (it returns their Stamp, or None).
    """
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise SonoshiftError(f"{out} is a broken symbolic link; choose another {hint}.")
    if not out.exists():
        return "create"
    if not out.is_dir():
        raise SonoshiftError(f"{out} exists and is a file, not a folder; choose another {hint} (nothing was changed).")
    found = read_stamp(out)
    if found is None and legacy is not None:
        found = legacy(out)
    if found is None and not any(out.iterdir()):
        return "create"
    return decide(out, kind, found, key, force, hint)


# ------------------------------------------------------------------------ outputs inside a shared folder


def read_ledger(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"kind", "key"}}`` of what sonoshift wrote into ``folder`` (empty when none)."""
    p = Path(folder) / LEDGER_FILE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("outputs", {}) if isinstance(data, dict) else {}


def claim_entries(
    folder: str | Path, entries: Mapping[str, str], kind: str, *, force: bool = False, hint: str = "--out"
) -> dict[str, Action]:
    """Decide, for each relative path in ``entries`` (path -> key), what to do inside the shared ``folder``.

    An absent path is created; a path the ledger records as the same ``kind`` is reused (same key) or replaced
    (``force``); any other existing path is refused (one sentence naming it). Nothing is changed here.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SonoshiftError(f"{folder} exists and is a file, not a folder; choose another {hint} (nothing was changed).")
    ledger = read_ledger(folder)
    actions: dict[str, Action] = {}
    for rel, key in entries.items():
        target = folder / rel
        if not target.exists() and not target.is_symlink():
            actions[rel] = "create"
            continue
        rec = ledger.get(rel)
        found = Stamp(str(rec.get("kind")), rec.get("key")) if isinstance(rec, dict) else None
        actions[rel] = decide(target, kind, found, key, force, hint)
    return actions


def record_entries(folder: str | Path, entries: Mapping[str, str], kind: str) -> None:
    """Add ``entries`` (relative path -> key) to ``folder``'s ledger (written atomically)."""
    folder = Path(folder)
    ledger = read_ledger(folder)
    for rel, key in entries.items():
        ledger[rel] = {"kind": kind, "key": key}
    text = json.dumps({"sonoshift_version": sonoshift.__version__, "outputs": ledger}, indent=1, sort_keys=True)
    atomic_write_text(folder / LEDGER_FILE, text + "\n")


def claim_file(out: str | Path, kind: str, key: str, *, force: bool = False, hint: str = "--out") -> Action:
    """Decide what to do with the single-file output ``out`` (a CSV, an ONNX file) of a ``kind`` command asked for
    ``key``, before any work: its folder's ledger says whether sonoshift wrote it. A path under a file, or a path
    that is a folder, is refused in one sentence, as is a file sonoshift did not write (even with ``force``)."""
    out = Path(out)
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise SonoshiftError(f"{parent} is a file, so {out} cannot be written under it; choose another "
                                     f"{hint} (nothing was changed).")
            break
    if out.is_dir():
        raise SonoshiftError(f"{out} is a folder; give {hint} the path of a file to write (nothing was changed).")
    return claim_entries(out.parent, {out.name: key}, kind, force=force, hint=hint)[out.name]


def record_file(out: str | Path, kind: str, key: str) -> None:
    """Record the single-file output ``out`` (just written) in its folder's ledger, for :func:`claim_file`."""
    out = Path(out)
    record_entries(out.parent, {out.name: key}, kind)


# ----------------------------------------------------------------------------------- all or nothing


class Batch:
    """Outputs that appear together: each is written to an owner-stamped temporary next to its final path
    and all are moved into place by :meth:`commit`; :meth:`discard` removes every temporary."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path]] = []
        self._after: list[Callable[[], None]] = []

    def path(self, final: str | Path, *, folder: bool = False) -> Path:
        """A temporary path to write instead of ``final`` (an empty folder with ``folder``, else an empty file)."""
        final = Path(final)
        if any(f == final for _, f in self._items):
            raise SonoshiftError(f"two outputs of one command would both be written to {final}.")
        tmp = make_temp_dir(final) if folder else make_temp_file(final)
        self._items.append((tmp, final))
        return tmp

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once every output is in place (e.g. update a ledger)."""
        self._after.append(fn)

    def commit(self) -> None:
        for tmp, final in self._items:
            replace_into(tmp, final)
        self._items.clear()
        for fn in self._after:
            fn()

    def discard(self) -> None:
        for tmp, _ in self._items:
            discard(tmp)
        self._items.clear()


@contextlib.contextmanager
def all_or_nothing() -> Iterator[Batch]:
    """A :class:`Batch` committed when the block succeeds and discarded when it raises (Ctrl-C included)."""
    batch = Batch()
    try:
        yield batch
    except BaseException:
        batch.discard()
        raise
    batch.commit()
