"""The one exception type that reaches users as a single clear sentence."""


class SonoshiftError(Exception):
    """Bad input or a failed precondition. The CLI prints the message and exits with status 1.

    The message is one sentence that names the file (or key) and what is wrong with it.
    """


def short_reason(e: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters, no final period), or its class name;
    for the "(reason)" part of a SonoshiftError about a file a library could not read."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    return text[:160].rstrip(".")
