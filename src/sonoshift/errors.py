"""The one exception type that reaches users as a single clear sentence."""


class SonoshiftError(Exception):
    """Bad input or a failed precondition. The CLI prints the message and exits with status 1.

    The message is one sentence that names the file (or key) and what is wrong with it.
    """
