"""The one exception type that reaches the user as a single line on stderr, never a traceback.

Shared by infer, trainer and exporter (infer is the torch-free base they build on). A program using the
Python API (mnist_gen) catches the standard types: a bad value is a ValueError, a file problem an OSError.
"""


class UserError(Exception):
    pass


class BadValue(UserError, ValueError):
    """A value the caller passed cannot be used (a digit out of range, a size over a cap...)."""


class BadFile(UserError, OSError):
    """A model or output file cannot be read, written or used."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, for a one-line error; its type's name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
