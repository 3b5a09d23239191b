"""The one exception type that reaches the user as a single line on stderr, never a traceback.

Shared by infer, trainer and exporter (infer is the torch-free base they build on).
"""


class UserError(Exception):
    pass
