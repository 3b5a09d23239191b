"""One renderer for `mnist-gen infer`, `mnist-gen interpolate` and `mnist-gen serve`.

Noise per seed, label cycling, batching, pixel conversion, grid layout and upscaling happen here and
nowhere else, so the same model, seed and options give the same pixels, and the same PNG bytes, on the
command line and over HTTP. numpy and the runtime's own helpers only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadValue
from .files import make_grid, to_uint8, upscale
from .generator import generate_batches
from .latent import slerp
from .noise import latents

# The largest picture we make: 64 Mpx (64 MiB as uint8). `--n 64 --scale 1000` would need 60 GiB.
MAX_SIDE = 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE
PADDING = 2  # pixels between grid cells, before upscaling
# One request's caps: the server enforces them and the static site's page checks them itself, so a request
# costs at most about 256 images of work and an 8x-upscaled picture wherever it is drawn.
MAX_IMAGES = 256
MAX_SCALE = 8
MAX_STEPS = 32
REQUEST_LIMITS = {"n": MAX_IMAGES, "scale": MAX_SCALE, "steps": MAX_STEPS, "pixels": MAX_PIXELS}


def random_seed() -> int:
    """A fresh seed for a request that gave none (it is shown, so the picture can be drawn again)."""
    import secrets

    return secrets.randbelow(2**31)


def check_pixels(height: int, width: int) -> None:
    """Refuse, before any work, a picture too large to hold in memory."""
    if height * width > MAX_PIXELS:
        raise BadValue(f"the image would be {width}x{height} pixels, over the cap of {MAX_PIXELS:,} "
                        f"({MAX_SIDE}x{MAX_SIDE}); ask for fewer images or a smaller scale")


@dataclass(frozen=True)
class Grid:
    """A grid to draw: images start .. start+n-1 of a seed, their labels (None for an unconditional model),
    layout and upscaling."""

    n: int
    labels: np.ndarray | None
    nrow: int
    scale: int
    image_size: int
    start: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the finished, upscaled grid, as make_grid lays it out."""
        ncol = max(1, min(self.nrow, self.n))
        rows = -(-self.n // ncol)
        cell = self.image_size + PADDING
        return (rows * cell + PADDING) * self.scale, (ncol * cell + PADDING) * self.scale

    def check_size(self, whole_grid: bool = True) -> None:
        """The grid picture (or, when only single images are written, one upscaled image) fits the cap."""
        check_pixels(*(self.shape if whole_grid else (self.image_size * self.scale,) * 2))


def plan_grid(generator, n: int, digits: list[int] | None = None, nrow: int | None = None, scale: int = 1,
              name: str = "--digit", start: int = 0) -> Grid:
    """Check the request against the model and lay the grid out.

    A conditional model cycles `digits` (default: every class) over the images, image i getting digits[i % len],
    so with all ten digits each row reads 0123456789; `start` skips to image `start` of the seed (its noise and
    its label). `name` is how the caller's user spells the digit option.
    """
    labels = None
    if generator.conditional:
        cycle = digits if digits is not None else list(range(generator.num_classes))
        generator.check_labels(cycle, name)
        labels = np.asarray(cycle, dtype=np.int64)[(start + np.arange(n)) % len(cycle)]
        nrow = nrow or (len(cycle) if len(cycle) > 1 and n >= len(cycle) else None)
    elif digits is not None:
        generator.check_labels(digits, name)  # raises: an unconditional model draws no chosen digit
    nrow = nrow or max(1, int(np.ceil(np.sqrt(n))))
    return Grid(n, labels, nrow, scale, generator.image_size, start)


def draw(generator, grid: Grid, seed: int, batch_size: int = 256):
    """Yield (index of the first, uint8 images [count, H, W]) for the grid's images, batch by batch (not upscaled)."""
    for start, images in generate_batches(generator.run, generator.latent_dim, grid.n, seed, grid.labels,
                                          batch_size, grid.start):
        yield start, to_uint8(images)


def assemble(grid: Grid, tiles: np.ndarray) -> np.ndarray:
    """All the grid's images [n, H, W] -> the upscaled grid picture."""
    return upscale(make_grid(tiles, grid.nrow, PADDING), grid.scale)


def render_grid(generator, grid: Grid, seed: int, batch_size: int = 256) -> np.ndarray:
    return assemble(grid, np.concatenate([images for _, images in draw(generator, grid, seed, batch_size)]))


def walk_latents(latent_dim: int, seed: int, steps: int, to_seed: int | None = None) -> np.ndarray:
    """A slerp walk between the first two noise vectors of `seed`, or between the first of `seed` and the first
    of `to_seed`: the noise of the first image of each seed's grid, so a walk joins two digits one has seen."""
    ends = latents(seed, 0, 2, latent_dim)
    if to_seed is not None:
        ends[1] = latents(to_seed, 0, 1, latent_dim)[0]
    return slerp(ends[0], ends[1], steps)


def walk_shape(image_size: int, steps: int, scale: int) -> tuple[int, int]:
    """(height, width) of the walk as one strip."""
    side, pad = image_size * scale, PADDING * scale
    return side + 2 * pad, steps * (side + pad) + pad


def render_walk(generator, seed: int, steps: int, digit: int | None = None, to: int | None = None,
                to_seed: int | None = None, scale: int = 1, name: str = "--digit") -> list[np.ndarray]:
    """The frames of a latent walk, uint8 and upscaled. From `digit` to `to` the two digits' images cross-fade
    along the walk (labels are discrete in the graph)."""
    if generator.conditional:
        if to is not None and digit is None:
            raise BadValue(f"{name.replace('digit', 'to')} needs {name} too: the digit the walk starts from")
        start = 0 if digit is None else digit
        generator.check_labels([start] + ([] if to is None else [to]), name)
    elif digit is not None or to is not None:
        generator.check_labels([digit if digit is not None else to], name)  # raises
    check_pixels(*walk_shape(generator.image_size, steps, scale))
    z = walk_latents(generator.latent_dim, seed, steps, to_seed)
    if generator.conditional:
        images = generator.run(z, np.full(steps, start, np.int64))
        if to is not None:
            t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None, None, None]
            images = (1 - t) * images + t * generator.run(z, np.full(steps, to, np.int64))
    else:
        images = generator.run(z)
    return [upscale(image, scale) for image in to_uint8(images)]


def walk_strip(frames: list[np.ndarray], scale: int) -> np.ndarray:
    """The walk's frames side by side in one picture."""
    return make_grid(np.stack(frames), len(frames), padding=PADDING * scale)
