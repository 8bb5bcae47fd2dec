"""Config overrides on the command line, one style for every command: positional ``key=value`` arguments; the
older ``--set key=value`` spelling still works (with a deprecation note) for commands that once took it."""

from __future__ import annotations

import typer

OVERRIDES_HELP = "key=value config overrides, e.g. train.steps=200 (as every sonoshift command)."
SET_HELP = "Deprecated spelling of a key=value override (give overrides as plain arguments)."


def merge_overrides(positional: list[str] | None, legacy: list[str]) -> list[str]:
    """Positional ``key=value`` overrides, then the deprecated ``--set key=value`` ones (a note on stderr)."""
    if legacy:
        typer.echo("note: --set is deprecated; give key=value overrides as plain arguments.", err=True)
    return [*(positional or []), *legacy]
