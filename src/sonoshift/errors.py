"""The one exception type that reaches users as a single clear sentence."""

from __future__ import annotations

import sys
from collections.abc import Callable


class SonoshiftError(Exception):
    """Bad input or a failed precondition. The CLI prints the message and exits with status 1.

    The message is one sentence that names the file (or key) and what is wrong with it.
    """


def short_reason(e: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters, no final period), or its class name;
    for the "(reason)" part of a SonoshiftError about a file a library could not read."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    return text[:160].rstrip(".")


def exit_on_error(main: Callable[[], object]) -> None:
    """Run a command's ``main``; a SonoshiftError becomes ``error: <sentence>`` on stderr and exit status 1 (the
    CLI and the ``bench/`` scripts share this, so bad input never ends in a traceback)."""
    try:
        main()
    except SonoshiftError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
