"""Training data: bundled MNIST, other IDX sets, image folders, CIFAR-10; clear one-line errors for bad files.

The real sets other than MNIST cannot be downloaded here, so the tests write small ones in each format.
"""

import gzip
import hashlib
import shutil

import numpy as np
import pytest
import torch
from conftest import write_cifar
from PIL import Image

from infer.errors import UserError
from trainer.data import BUNDLED_MNIST, InMemoryBatches, load_dataset, to_float
from trainer.data import idx as idx_module

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def write_idx(folder, prefix, images, labels, gz=True, magic=(0, 0, 8)):
    """An IDX pair as MNIST lays it out: PREFIX-images-idx3-ubyte(.gz) and PREFIX-labels-idx1-ubyte(.gz)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    files = {
        f"{prefix}-images-idx3-ubyte": bytes([*magic, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, h, w))
        + images.astype(np.uint8).tobytes(),
        f"{prefix}-labels-idx1-ubyte": bytes([*magic, 1]) + len(labels).to_bytes(4, "big")
        + labels.astype(np.uint8).tobytes(),
    }
    for name, raw in files.items():
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return folder


def small_idx_set(folder, n=40, classes=4, **kw):
    rng = np.random.default_rng(0)
    return write_idx(folder, "train", rng.integers(0, 256, (n, 28, 28)), np.arange(n) % classes, **kw)


def test_bundled_mnist_is_the_official_data():
    data = load_dataset("mnist")
    assert data.images.shape == (60000, 28, 28, 1) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == TRAIN_COUNTS and data.class_names == list("0123456789")
    assert load_dataset("mnist", "test").images.shape == (10000, 28, 28, 1)


def test_mnist_raw_files_in_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in BUNDLED_MNIST.glob("t10k-*.gz"):
        (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    assert load_dataset("mnist", "test", tmp_path).images.shape == (10000, 28, 28, 1)


def test_a_changed_mnist_file_is_named(tmp_path):
    for gz in BUNDLED_MNIST.glob("t10k-*.gz"):
        shutil.copy(gz, tmp_path)
    raw = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one wrong label
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.*corrupt"):
        load_dataset("mnist", "test", tmp_path)


def test_fashion_mnist_format_files_train_as_their_own_set(tmp_path):
    """The bug that started it: Fashion-MNIST-format files were refused as 'corrupt MNIST'."""
    small_idx_set(tmp_path, classes=10)
    data = load_dataset("idx", data_dir=tmp_path)
    assert data.images.shape == (40, 28, 28, 1) and data.num_classes == 10 and data.class_names[3] == "3"
    with pytest.raises(UserError, match="SHA-256 does not match the official MNIST"):
        load_dataset("mnist", data_dir=tmp_path)


def test_known_sets_check_the_published_md5_of_gz_files(tmp_path, monkeypatch):
    small_idx_set(tmp_path, classes=10)
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.gz is corrupt: its MD5 does not match .*Fashion"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    # The same files pass when they are what the published checksums say (here: as if published for them).
    digests = {p.name.removesuffix(".gz"): hashlib.md5(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.gz")}
    known = idx_module.KNOWN["fashion-mnist"]
    monkeypatch.setitem(idx_module.KNOWN, "fashion-mnist", idx_module.KnownSet(known.title, known.class_names,
                                                                               md5_gz=digests))
    data = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert data.class_names[9] == "Ankle boot" and not data.notes


def test_raw_files_of_a_known_set_are_format_checked_and_say_so(tmp_path):
    small_idx_set(tmp_path, classes=10, gz=False)
    data = load_dataset("kmnist", data_dir=tmp_path)
    assert data.class_names[0] == "o" and "only their format was checked" in data.notes[0]


@pytest.mark.parametrize("damage, message", [
    ("magic", "not an unsigned-byte IDX file"),
    ("truncated", "truncated"),
    ("labels", "label 200 is out of range"),
    ("count", "40 images but 39 labels"),
])
def test_bad_idx_files_are_one_clear_error(tmp_path, damage, message):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 28, 28)), np.arange(40) % 4
    if damage == "labels":
        labels[7] = 200
    if damage == "count":
        labels = labels[:39]
    write_idx(tmp_path, "train", images, labels, gz=False, magic=(0, 0, 9) if damage == "magic" else (0, 0, 8))
    if damage == "truncated":
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match=message):
        load_dataset("idx", data_dir=tmp_path)


def write_image(path, colour, size=(20, 24), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_folder_of_class_subfolders(tmp_path):
    for i in range(3):
        write_image(tmp_path / "cats" / f"{i}.png", (200, 50, 50))
        write_image(tmp_path / "dogs" / f"{i}.jpg", (50, 50, 200))
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image, not counted")
    data = load_dataset("folder", data_dir=tmp_path, image_size=32)
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images.shape == (6, 32, 32, 3) and data.channels == 3
    assert data.notes == [f"skipped 1 unreadable image file(s) in {tmp_path}"]
    assert tuple(data.images[0, 16, 16]) == (200, 50, 50) and tuple(data.images[5, 16, 16])[2] > 150


def test_flat_grey_folder_is_unconditional_and_channels_can_be_forced(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", 30 * i, mode="L")
    data = load_dataset("folder", data_dir=tmp_path, image_size=28)
    assert data.labels is None and data.num_classes == 0 and data.images.shape == (4, 28, 28, 1)
    assert load_dataset("folder", data_dir=tmp_path, image_size=28, channels=3).images.shape == (4, 28, 28, 3)


def test_folders_without_images_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no PNG or JPEG images"):
        load_dataset("folder", data_dir=tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="none of the 1 image files could be read"):
        load_dataset("folder", data_dir=tmp_path / "bad")


def test_cifar10_binary_records(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-bin")
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.images.shape == (100, 32, 32, 3) and data.class_names[0] == "airplane"
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert data.labels[3] == raw[3 * 3073] == 3
    red_plane = np.frombuffer(raw[3 * 3073 + 1 : 3 * 3073 + 1 + 1024], np.uint8).reshape(32, 32)
    assert np.array_equal(data.images[3, :, :, 0], red_plane)  # channel-major records -> HWC images


def test_truncated_cifar10_is_named(tmp_path):
    write_cifar(tmp_path, truncate=100)
    with pytest.raises(UserError, match="data_batch_1.bin: .* not a whole number of 3073-byte"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_sizes_and_the_float_range_the_models_see(size):
    data = load_dataset("mnist", "test", image_size=size)
    x = to_float(torch.from_numpy(data.images[:16].copy()))
    assert x.shape == (16, 1, size, size) and x.min() == -1.0 and x.max() == 1.0


def test_batches_are_seeded_permutations_and_drop_the_last_partial():
    x, y = torch.arange(10, dtype=torch.uint8)[:, None, None, None], torch.arange(10)
    batches = InMemoryBatches(x, y, batch_size=3, seed=0)
    epoch1 = [b for _, b in batches.epoch(1)]
    assert len(epoch1) == 3 and all(len(b) == 3 for b in epoch1)
    assert len(set(torch.cat(epoch1).tolist())) == 9  # a permutation, one image dropped
    assert [b.tolist() for _, b in batches.epoch(1)] == [b.tolist() for b in epoch1]
    assert [b.tolist() for _, b in batches.epoch(2)] != [b.tolist() for b in epoch1]
    assert [b.tolist() for _, b in batches.epoch(1, start_step=2)] == [epoch1[2].tolist()]
