"""The one exception type users see for bad input.

Every check on user input raises :class:`DebuggableError` (a ``ValueError``) with
one sentence naming the argument, the value and what was expected, so the CLI can
print it without a traceback.
"""


class DebuggableError(ValueError):
    """Bad input or an unusable run directory, explained in one sentence."""
