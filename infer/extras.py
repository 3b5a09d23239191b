"""What the torch-free runtime install (`pip install mnist-gen`) leaves out, said in one line."""

from __future__ import annotations

import importlib.util
import sys

TRAIN_EXTRA = 'pip install "mnist-gen[train]" (from a clone: pip install ".[train]")'


def require_torch(package: str) -> None:
    """Called when `trainer` or `exporter` is imported: without PyTorch, say which extra to install.

    Run as `python -m trainer...` (Python sets sys.argv[0] to "-m" while it imports the package) this is one
    `error:` line and exit 2; imported from a program, a ModuleNotFoundError with the same words.
    """
    if importlib.util.find_spec("torch") is not None:
        return
    message = f"{package} needs PyTorch, which the runtime install leaves out: {TRAIN_EXTRA}"
    if sys.argv[:1] == ["-m"]:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)
    raise ModuleNotFoundError(message, name="torch")
