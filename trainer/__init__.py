"""mnist-gen trainer: a fast, observable, crash-safe DCGAN on MNIST (`python -m trainer`)."""

from infer import __version__
from infer.extras import require_torch

require_torch("python -m trainer")

__all__ = ["__version__"]
