"""One progress bar style for every long stage (rich, with ETA)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)


class _Progress(Progress):
    """A Progress that leaves no final bar line when its block ends with an exception (or, for :func:`track`, when
    the loop over it stops early): the error message stays the last line, not a half-finished bar."""

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is None:
            self.stop()
        elif not self.disable:  # Progress.stop would add the bar's last state (and a blank line off a terminal)
            self.live.transient = True
            self.live.stop()


def make_progress(transient: bool = False) -> Progress:
    """A rich Progress with description, bar, count, elapsed time and ETA (printed to stderr); a block that ends
    with an exception prints no final bar line."""
    return _Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
    )


def track(items: Iterable[T], description: str, total: int | None = None, disable: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (no bar when ``disable``)."""
    if disable:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    # A loop that raises or breaks leaves this generator suspended at ``yield``; when it is closed (collected),
    # GeneratorExit ends the bar's block with an exception, so no stale bar line follows the caller's error.
    with make_progress() as p:
        task = p.add_task(description, total=total, info="")
        for item in items:
            yield item
            p.advance(task)
