"""Torch-free file helpers shared by every part of mnist-gen: atomic writes and image grids.

This module is the runtime's own; the trainer and exporter import it too (never the reverse).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)  # read the process umask once (there is no way to read it without setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    A crash or an exception at any moment leaves the previous file (or no file) in place,
    never a half-written one. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        # The name is chosen before the file exists, so an interrupt (Ctrl-C, SIGTERM) at any moment after its
        # creation finds it in `tmp` and removes it; mkstemp left a window between creating the file and
        # returning its name. Mode 0o666 under the umask: the permissions a plain open() gives.
        while tmp is None:
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:  # another writer's (8 random hex digits: all but never)
                tmp = None
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files that atomic_path left in `folder` when its process was killed (SIGKILL).

    Only names of atomic_path's own pattern (mkstemp's ".NAME.XXXXXXXX.tmp") are touched. Returns how many.
    """
    removed = 0
    for path in Path(folder).glob(".*.tmp"):
        if re.fullmatch(r"\..+\.[A-Za-z0-9_]{8}\.tmp", path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[N, C, H, W] (or [N, H, W]) floats in [-1, 1] -> uint8 [N, H, W] for grey, [N, H, W, 3] for RGB."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, nrow: int, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images [N, H, W] (or RGB [N, H, W, 3]) into one image, `nrow` per row, `padding` apart."""
    n, h, w = images.shape[:3]
    ncol = max(1, min(nrow, n))
    nrows = -(-n // ncol)
    shape = (nrows * (h + padding) + padding, ncol * (w + padding) + padding, *images.shape[3:])
    grid = np.full(shape, pad_value, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = image
    return grid


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling, for viewing small digits."""
    return image if scale == 1 else image.repeat(scale, axis=0).repeat(scale, axis=1)


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 grayscale image as PNG bytes. Same pixels -> same bytes (a file, an HTTP response)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# The picture formats a file name may ask for. PNG and lossless WebP keep every pixel; JPEG at quality 95 is
# close but lossy (a grid of thin strokes shows its artefacts at lower qualities).
IMAGE_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}),
                 ".webp": ("WEBP", {"lossless": True})}


def image_format(path: str | os.PathLike) -> str:
    """The extension of `path` if it names a format we write, else a ValueError naming those that we do."""
    from .errors import BadValue

    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise BadValue(f"{path}: the file name must end in {', '.join(IMAGE_FORMATS)} (the format written)")
    return suffix


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 image in the format its extension names (image_format), atomically."""
    import io

    from PIL import Image

    name, options = IMAGE_FORMATS[image_format(path)]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=name, **options)
    write_bytes_atomic(path, buffer.getvalue() if name != "PNG" else encode_png(image))


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 grayscale image as PNG, atomically."""
    write_bytes_atomic(path, encode_png(image))


def encode_gif(frames: list[np.ndarray], duration_ms: int = 300) -> bytes:
    """uint8 grayscale frames as the bytes of a looping animated GIF."""
    import io

    from PIL import Image

    pictures = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def save_gif(path: str | os.PathLike, frames: list[np.ndarray], duration_ms: int = 300) -> None:
    """Write uint8 grayscale frames as a looping animated GIF, atomically."""
    write_bytes_atomic(path, encode_gif(frames, duration_ms))
