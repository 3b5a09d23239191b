"""mnist-gen trainer: a fast, observable, crash-safe DCGAN on MNIST (`python -m trainer`)."""

from infer import __version__

__all__ = ["__version__"]
