"""IDX data sets (MNIST's format): MNIST itself, Fashion-MNIST, Kuzushiji-MNIST, or any set laid out alike.

Files are read from a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
and t10k-labels-idx1-ubyte, gzip (.gz) or raw, also in torchvision's NAME/raw layout. Every file is checked
for format (magic number, dimensions, length, image and label counts, label range); the known sets are
also checked against their published checksums. MNIST ships in the source tree (trainer/mnist/), so the
default run needs no download.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infer.errors import UserError

from .dataset import Dataset

BUNDLED_MNIST = Path(__file__).resolve().parents[1] / "mnist"
SPLITS = {"train": "train", "test": "t10k"}
MAX_CLASSES = 100  # D stacks one input map per class: more would be a mistake, not a data set
UBYTE = 0x08


@dataclass(frozen=True)
class KnownSet:
    """A published IDX data set: its class names and checksums."""

    title: str
    class_names: tuple[str, ...]
    sha256_raw: dict[str, str] | None = None  # of the decompressed files: checkable for .gz and raw alike
    md5_gz: dict[str, str] | None = None  # of the .gz files, as the authors publish them


KNOWN = {
    "mnist": KnownSet("MNIST", tuple("0123456789"), sha256_raw={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }),
    "fashion-mnist": KnownSet("Fashion-MNIST", (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ), md5_gz={
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "kmnist": KnownSet("Kuzushiji-MNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), md5_gz={
        "train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134",
    }),
}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST", "idx": "MNIST"}


def find_file(data_dir: Path, name: str, dataset: str) -> Path:
    """The file `name` in data_dir, gzip or raw, also in torchvision's NAME/raw layout."""
    for folder in (data_dir, data_dir / TORCHVISION_FOLDERS[dataset] / "raw", data_dir / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise UserError(f"{name}(.gz) not found in {data_dir}")


def parse_idx(raw: bytes, path: Path, ndim: int) -> np.ndarray:
    """Check an IDX file's header against its contents and return its uint8 array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != UBYTE or raw[3] != ndim:
        magic = raw[:4].hex() if len(raw) >= 4 else "none"
        raise UserError(f"{path}: not an unsigned-byte IDX file of {ndim} dimension(s) (magic number {magic}, "
                        f"expected 0000080{ndim})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise UserError(f"{path}: {'truncated' if len(raw) < expected else 'has trailing bytes'}: "
                        f"header says {'x'.join(map(str, shape))} ({expected:,} bytes), file has {len(raw):,}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_file(path: Path, name: str, known: KnownSet | None, ndim: int, notes: list[str]) -> np.ndarray:
    """Read one IDX file (gzip or raw), verify its checksum where one is published, and parse it."""
    try:
        packed = path.read_bytes()
        raw = gzip.decompress(packed) if path.suffix == ".gz" else packed
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if known is not None and known.sha256_raw is not None:
        if hashlib.sha256(raw).hexdigest() != known.sha256_raw[name]:
            raise UserError(f"{path} is corrupt: its SHA-256 does not match the official {known.title} {name}")
    elif known is not None and known.md5_gz is not None:
        if path.suffix == ".gz":
            if hashlib.md5(packed, usedforsecurity=False).hexdigest() != known.md5_gz[name]:
                raise UserError(f"{path} is corrupt: its MD5 does not match the published {known.title} {name}.gz")
        else:
            note = f"{known.title}: raw files, so only their format was checked (the published MD5s are of the .gz)"
            if note not in notes:
                notes.append(note)
    return parse_idx(raw, path, ndim)


def load_idx(dataset: str, split: str, data_dir: str | Path | None) -> Dataset:
    """A known IDX set or a generic one (`idx`) from data_dir; MNIST defaults to the bundled copy."""
    known = KNOWN.get(dataset)
    if data_dir is None:
        if dataset != "mnist":
            raise UserError(f"--dataset {dataset} needs --data-dir with its four IDX files (nothing is downloaded)")
        if not BUNDLED_MNIST.is_dir():
            raise UserError("MNIST ships with the source tree, not the wheel: train from a clone "
                            "(pip install -e '.[train]') or pass --data-dir with the four MNIST IDX files")
    folder = Path(data_dir) if data_dir is not None else BUNDLED_MNIST
    if not folder.is_dir():
        raise UserError(f"data dir {folder} is not a folder")
    prefix, notes = SPLITS[split], []
    names = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    images = read_file(find_file(folder, names[0], dataset), names[0], known, 3, notes)
    labels_path = find_file(folder, names[1], dataset)
    labels = read_file(labels_path, names[1], known, 1, notes)
    if len(images) != len(labels):
        raise UserError(f"{folder}: {len(images):,} images but {len(labels):,} labels in the {split} split")
    class_names = list(known.class_names) if known else [str(c) for c in range(int(labels.max(initial=0)) + 1)]
    if labels.max(initial=0) >= min(len(class_names), MAX_CLASSES):
        raise UserError(f"{labels_path}: label {int(labels.max())} is out of range (0..{len(class_names) - 1}"
                        f"{'' if known else f', at most {MAX_CLASSES} classes'})")
    return Dataset(dataset, images[..., None], labels.astype(np.int64), class_names, notes)
