"""CIFAR-10, binary version: fixed-size records (1 label byte + 3072 pixel bytes), never a pickle.

Read from `cifar-10-binary.tar.gz` (checked against the published MD5, members read in memory)
or from its extracted `cifar-10-batches-bin/` folder (format checked: record size, label range).
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np

from infer.errors import UserError

from .dataset import Dataset

ARCHIVE, ARCHIVE_MD5, FOLDER = "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin"
SPLITS = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECORD = 1 + 3 * 32 * 32


def parse_records(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images [N, 32, 32, 3], int64 labels [N])."""
    if len(raw) == 0 or len(raw) % RECORD:
        raise UserError(f"{name}: {len(raw):,} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                        "(truncated or not CIFAR-10's binary version)")
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASS_NAMES):
        raise UserError(f"{name}: label {int(labels.max())} is out of range (0..9)")
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_members(data_dir: Path, names: list[str]) -> dict[str, bytes]:
    archive = data_dir / ARCHIVE
    if archive.is_file():
        packed = archive.read_bytes()
        if hashlib.md5(packed, usedforsecurity=False).hexdigest() != ARCHIVE_MD5:
            raise UserError(f"{archive} is corrupt: its MD5 does not match the published CIFAR-10 binary archive")
        import io

        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in members]
            if missing:
                raise UserError(f"{archive}: no {missing[0]} inside")
            return {n: tar.extractfile(members[n]).read() for n in names}
    for folder in (data_dir / FOLDER, data_dir):
        if all((folder / n).is_file() for n in names):
            return {n: (folder / n).read_bytes() for n in names}
    raise UserError(f"CIFAR-10 not found in {data_dir}: expected {ARCHIVE} or {FOLDER}/ with {', '.join(names)}")


def load_cifar10(split: str, data_dir: str | Path | None) -> Dataset:
    if data_dir is None:
        raise UserError(f"--dataset cifar10 needs --data-dir with {ARCHIVE} or {FOLDER}/ (nothing is downloaded)")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"data dir {data_dir} is not a folder")
    parts = [parse_records(raw, name) for name, raw in _read_members(data_dir, SPLITS[split]).items()]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return Dataset("cifar10", images, labels, list(CLASS_NAMES))
