"""Your own images: one subfolder per class (conditional) or one flat folder (unconditional).

PNG and JPEG, read with Pillow, centre-cropped to a square and resized once to the training size.
Images Pillow cannot read are skipped and counted; grey or colour is decided from the data (any
colour image makes the set RGB) unless --channels says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infer.errors import UserError

from .dataset import Dataset

EXTENSIONS = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def load_folder(data_dir: str | Path | None, image_size: int, channels: int | None) -> Dataset:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if data_dir is None:
        raise UserError("--dataset folder needs --data-dir: a folder of images, or of one subfolder per class")
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"data dir {root} is not a folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _images_in(root)
    if classes and loose:
        raise UserError(f"{root} mixes class subfolders with {len(loose)} loose images; use one layout or the other")
    groups = [(c.name, _images_in(c)) for c in classes] if classes else [("", loose)]
    for name, files in groups:
        if not files:
            raise UserError(f"{root / name}: no PNG or JPEG images" if name else f"{root}: no PNG or JPEG images "
                            "(and no class subfolders)")

    pictures, labels, skipped = [], [], 0
    for label, (_, files) in enumerate(groups):
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
                    pictures.append(image.copy())
                labels.append(label)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                skipped += 1
    if not pictures:
        raise UserError(f"{root}: none of the {skipped} image files could be read")
    if channels is None:
        channels = 1 if all(p.mode in GREY_MODES for p in pictures) else 3
    mode = "L" if channels == 1 else "RGB"
    images = np.stack([np.asarray(ImageOps.fit(p.convert(mode), (image_size, image_size), Image.Resampling.LANCZOS))
                       for p in pictures])
    images = images.reshape(len(images), image_size, image_size, channels)
    notes = [f"skipped {skipped} unreadable image file(s) in {root}"] if skipped else []
    if classes:
        return Dataset("folder", images, np.asarray(labels, np.int64), [c.name for c in classes], notes)
    return Dataset("folder", images, None, [], notes)
