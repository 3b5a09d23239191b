"""The one exception type that reaches the user as a single line on stderr, never a traceback.

Shared by infer, trainer and exporter (infer is the torch-free base they build on).
"""


class UserError(Exception):
    pass


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, for a one-line error; its type's name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
