"""MNIST from the four official IDX files, verified and decoded with numpy, held in memory.

The source tree carries its own copy (trainer/mnist/*.gz) so training never needs the network; the
wheel leaves it out (generation does not need it), so an install from a wheel trains with --data-dir.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from infer.errors import UserError

BUNDLED_DIR = Path(__file__).parent / "mnist"

# SHA-256 of each decompressed file, as published with the official release.
FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {"train": "train", "test": "t10k"}


def _find(data_dir: Path, name: str) -> Path:
    """The file `name` in data_dir, gzip or raw, also in torchvision's MNIST/raw layout."""
    for folder in (data_dir, data_dir / "MNIST" / "raw", data_dir / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise UserError(f"MNIST file {name}(.gz) not found in {data_dir}")


def read_idx(path: Path, name: str) -> np.ndarray:
    """Read and verify one IDX file (gzip or raw) into a uint8 array."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read MNIST file {path}: {e}") from None
    if hashlib.sha256(raw).hexdigest() != FILES[name]:
        raise UserError(f"MNIST file {path} is corrupt: its SHA-256 does not match the official {name}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28] uint8 and labels [N] uint8 of the given split ('train' or 'test')."""
    if data_dir is None and not BUNDLED_DIR.is_dir():
        raise UserError("MNIST ships with the source tree, not the wheel: train from a clone "
                        "(pip install -e '.[train]') or pass --data-dir with the four MNIST IDX files")
    folder = Path(data_dir) if data_dir is not None else BUNDLED_DIR
    if not folder.is_dir():
        raise UserError(f"data dir {folder} is not a folder")
    prefix = SPLITS[split]
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"), f"{prefix}-images-idx3-ubyte")
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"), f"{prefix}-labels-idx1-ubyte")
    return images, labels


def to_training_tensor(images: np.ndarray, image_size: int, device: torch.device) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, S, S] in [-1, 1] on `device`, resized once if S != 28."""
    x = torch.from_numpy(images.copy()).to(device).unsqueeze(1).float().div_(127.5).sub_(1.0)
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp_(-1.0, 1.0)
    return x


class InMemoryBatches:
    """The whole training set as one tensor on the training device, batched by index.

    Each epoch draws a permutation from its own seeded generator (seed, epoch), so a resumed
    run sees exactly the batches the uninterrupted run would. The last partial batch is dropped.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
        self.images, self.labels = images, labels
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = len(images) // batch_size

    def epoch(self, epoch: int, start_step: int = 0):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.images), generator=g).to(self.images.device)
        for step in range(start_step, self.steps_per_epoch):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]
