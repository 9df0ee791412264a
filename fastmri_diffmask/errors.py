"""One exception type for bad user input.

Anything a user can get wrong (a path, a flag value, a file's contents) raises
:class:`UserError` with one line saying what was wrong and what to do. The CLI prints that line
and exits with code 2; library callers can catch it like a ``ValueError``.
"""


class UserError(ValueError):
    """Bad input from the user: the message is one line, what was wrong and what to do."""
