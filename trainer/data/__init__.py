"""Training data: one reader per source, each returning a Dataset (uint8 images, labels, class names).

The training loop never knows which reader it got: it sees a Dataset and batches it by index.
"""

from __future__ import annotations

from pathlib import Path

from infer.errors import UserError

from .cifar10 import load_cifar10
from .dataset import Dataset, InMemoryBatches, resize, to_float
from .folder import load_folder
from .idx import BUNDLED_MNIST, load_idx

DATASETS = ("mnist", "fashion-mnist", "kmnist", "idx", "folder", "cifar10")
NATIVE_SIZE = {"mnist": 28, "fashion-mnist": 28, "kmnist": 28, "idx": 28, "cifar10": 32, "folder": 64}

__all__ = ["BUNDLED_MNIST", "DATASETS", "Dataset", "InMemoryBatches", "NATIVE_SIZE", "load_dataset", "resize",
           "to_float"]


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 image_size: int | None = None, channels: int | None = None) -> Dataset:
    """Read a data set and bring it to `image_size` (default: its native size) and `channels` (default: its own)."""
    size = image_size or NATIVE_SIZE[name]
    if name == "folder":
        data = load_folder(data_dir, size, channels)
    elif name == "cifar10":
        data = load_cifar10(split, data_dir)
    elif name in NATIVE_SIZE:
        data = load_idx(name, split, data_dir)
    else:
        raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if channels is not None:
        data = data.with_channels(channels)
    data.images = resize(data.images, size)
    return data
