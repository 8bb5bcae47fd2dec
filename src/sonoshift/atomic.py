"""Outputs appear whole or not at all: write to a temporary sibling, then rename.

Every temporary sibling is named after its owner, ``.NAME.tmp-<pid>-<start>-<host>-<random>`` (``.NAME.old-...``
for the previous output while it is being replaced), where ``<start>`` is the owner's process start time. A
process killed with ``kill -9`` cannot clean up after itself, so the next sonoshift run that writes next to it
removes the temporaries whose owner is dead (:func:`remove_stale`); a temporary of a live process (same pid and
start time on this host) or of another host is never touched. Created files and folders get the user's umask
(``mkstemp``/``mkdtemp`` alone would make them 0600/0700).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_STAMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<start>\d+)-(?P<host>[A-Za-z0-9_]+)-(?P<rand>[A-Za-z0-9_]*)$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux /proc), 0 where unknown, None if no such
    process. Together with the pid it names one process: a recycled pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the command name may hold spaces or ')'
    except (IndexError, ValueError):
        return 0


def _alive(pid: int, start: int) -> bool:
    if not Path("/proc").is_dir():  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = process_start(pid)
    if now is None:
        return False
    return now == 0 or start == 0 or now == start


def owner_prefix(name: str, kind: str = "tmp") -> str:
    """The owner-stamped prefix of a temporary sibling of ``name`` made by this process."""
    pid = os.getpid()
    return f".{name}.{kind}-{pid}-{process_start(pid) or 0}-{_host()}-"


def is_stale(path: Path) -> bool:
    """True when ``path`` is a sonoshift temporary whose owner process on this host is dead."""
    m = _STAMP.match(path.name)
    if m is None or m["host"] != _host():
        return False
    return not _alive(int(m["pid"]), int(m["start"]))


def remove_stale(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries (``.NAME.tmp-*``, ``.NAME.old-*``) of dead sonoshift processes in ``folder``
    (only those of ``name`` when given); returns what was removed. Live owners and other hosts are left alone."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _STAMP.match(p.name)
        if m is None or (name is not None and m["name"] != name) or not is_stale(p):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def make_temp_dir(final: str | os.PathLike) -> Path:
    """An owner-stamped empty folder next to ``final`` (stale ones of ``final`` are removed first), with the
    permissions a plain ``mkdir`` would give."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=owner_prefix(final.name), dir=final.parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def make_temp_file(final: str | os.PathLike) -> Path:
    """An owner-stamped empty file next to ``final``, with the permissions a plain ``open(..., "w")`` would give."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, final.name)
    fd, tmp = tempfile.mkstemp(prefix=owner_prefix(final.name), dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())
    return Path(tmp)


def replace_into(tmp: Path, final: Path) -> None:
    """Move ``tmp`` onto ``final``; an existing ``final`` is first renamed to an owner-stamped ``.old`` sibling
    and removed after the swap (a folder cannot be renamed over a non-empty folder)."""
    old = None
    if final.exists() or final.is_symlink():
        old = Path(tempfile.mktemp(prefix=owner_prefix(final.name, "old"), dir=final.parent))
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def discard(tmp: Path) -> None:
    """Remove a temporary file or folder (no error when it is gone)."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; on success it replaces ``final``, on error it is removed.

    ``final`` must not exist or must be a directory the caller is allowed to replace (callers that write where
    a user points decide that with :mod:`sonoshift.outputs` first).
    """
    final = Path(final)
    tmp = make_temp_dir(final)
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    replace_into(tmp, final)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file next to ``final`` for writing; it is renamed onto ``final`` only on success."""
    final = Path(final)
    tmp = make_temp_file(final)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        discard(tmp)
        raise


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_file(final, "wb") as f:
        f.write(data)


def atomic_write_text(final: str | os.PathLike, text: str) -> None:
    """Write ``text`` (utf-8) to ``final`` atomically."""
    with atomic_file(final, "w", encoding="utf-8") as f:
        f.write(text)
