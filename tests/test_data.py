"""MNIST loading: the bundled copy, --data-dir layouts, and clear errors for missing or corrupt files."""

import gzip
import shutil

import numpy as np
import pytest
import torch

from infer.errors import UserError
from trainer.data import BUNDLED_DIR, InMemoryBatches, load_mnist, to_training_tensor

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_bundled_mnist_is_the_official_data():
    images, labels = load_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == TRAIN_COUNTS
    test_images, test_labels = load_mnist("test")
    assert test_images.shape == (10000, 28, 28) and len(test_labels) == 10000


def test_raw_files_in_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in BUNDLED_DIR.glob("t10k-*.gz"):
        (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    images, labels = load_mnist("test", tmp_path)
    assert images.shape == (10000, 28, 28)


def test_missing_file_is_named(tmp_path):
    shutil.copy(BUNDLED_DIR / "t10k-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        load_mnist("test", tmp_path)


def test_corrupt_file_is_named(tmp_path):
    for gz in BUNDLED_DIR.glob("t10k-*.gz"):
        shutil.copy(gz, tmp_path)
    raw = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one wrong label
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.*corrupt"):
        load_mnist("test", tmp_path)


def test_truncated_gzip_is_named(tmp_path):
    for gz in BUNDLED_DIR.glob("t10k-*.gz"):
        shutil.copy(gz, tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte"):
        load_mnist("test", tmp_path)


@pytest.mark.parametrize("size", [28, 64])
def test_training_tensor_range_and_size(size):
    images, _ = load_mnist("test")
    x = to_training_tensor(images[:16], size, torch.device("cpu"))
    assert x.shape == (16, 1, size, size)
    assert x.min() == -1.0 and x.max() == 1.0


def test_batches_are_seeded_permutations_and_drop_the_last_partial():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = InMemoryBatches(x, y, batch_size=3, seed=0)
    epoch1 = [b for _, b in batches.epoch(1)]
    assert len(epoch1) == 3 and all(len(b) == 3 for b in epoch1)
    assert len(set(torch.cat(epoch1).tolist())) == 9  # a permutation, one image dropped
    assert [b.tolist() for _, b in batches.epoch(1)] == [b.tolist() for b in epoch1]
    assert [b.tolist() for _, b in batches.epoch(2)] != [b.tolist() for b in epoch1]
    assert [b.tolist() for _, b in batches.epoch(1, start_step=2)] == [epoch1[2].tolist()]
