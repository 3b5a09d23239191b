"""The Python API (imported as `mnist_gen`): load a generator once, then draw digits as arrays or pictures.

    import mnist_gen
    generator = mnist_gen.load()                        # the bundled model, CUDA if it runs, else CPU
    sevens = generator.generate(16, digits=7, seed=1)   # uint8 [16, 28, 28]
    generator.grid(64, seed=0).save("grid.png")         # the file `mnist-gen infer --n 64 --seed 0` writes

`mnist-gen` (infer/cli.py) and `mnist-gen serve` (infer/serve.py) are built on these same calls, so the same
options give the same pixels everywhere. Errors are ValueError (a bad argument) or OSError (a model file),
with messages in this API's own argument names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import BadValue
from .generator import OnnxGenerator, load_generator
from .images import Grid, draw, plan_grid, render_grid, render_walk, walk_strip
from .noise import MAX_SEED, MAX_START

Digits = int | str | Sequence[int | str] | None


def check_seed(seed: int, name: str = "seed") -> int:
    """Seeds are integers 0 .. 2**64-1 on every surface (the API, the CLI, HTTP)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed <= MAX_SEED:
        raise BadValue(f"{name} must be an integer in 0..{MAX_SEED}, got {seed!r}")
    return int(seed)


def check_count(value: int, name: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low or \
            (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise BadValue(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def parse_digits(text: str | None, name: str = "digits") -> list[int | str] | None:
    """"3" or "0,1,2" (ASCII digits) -> [3] or [0, 1, 2]; a class name stays a name. None stays None."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise BadValue(f"{name} {text!r}: give a digit or a list such as 0,1,2")
    return [int(part) if re.fullmatch(r"-?[0-9]+", part) else part for part in parts]


class Generator:
    """A loaded generator. Every method takes `seed` (0 .. 2**64-1) and draws image i of a seed from the same
    noise whatever else is asked, so `generate(1, seed=s, start=i)` is image i of `generate(n, seed=s)`.

    `digits`: one digit, a list cycled over the images (image i gets digits[i % len]), class names for models
    trained on named classes, or None: every class in turn, so a grid's rows read 0123456789.
    """

    def __init__(self, model: OnnxGenerator):
        self.model = model

    path = property(lambda self: self.model.path, doc="the ONNX file")
    provider = property(lambda self: self.model.provider, doc="the onnxruntime provider that really runs")
    latent_dim = property(lambda self: self.model.latent_dim)
    image_size = property(lambda self: self.model.image_size)
    num_classes = property(lambda self: self.model.num_classes, doc="0 for an unconditional model")
    channels = property(lambda self: self.model.channels, doc="1 grey, 3 RGB")
    class_names = property(lambda self: self.model.class_names)
    metadata = property(lambda self: self.model.metadata)

    def labels(self, digits: Digits, name: str = "digits") -> list[int] | None:
        """`digits` as class indices (names resolved against the model's classes); None stays None."""
        if digits is None:
            return None
        items = [digits] if isinstance(digits, int | str | np.integer) else list(digits)
        if not items:
            raise BadValue(f"{name}: give at least one digit")
        labels = []
        for item in items:
            if isinstance(item, str):
                labels.append(self.model.class_index(item, name))
            elif isinstance(item, int | np.integer) and not isinstance(item, bool):
                labels.append(int(item))
            else:
                raise BadValue(f"{name} {item!r}: give digits as integers or class names")
        self.model.check_labels(labels, name)
        return labels

    def plan(self, n: int, digits: Digits = None, nrow: int | None = None, scale: int = 1, start: int = 0,
             name: str = "digits") -> Grid:
        """Check a request against the model and the size caps, before any work."""
        check_count(n, "n")
        check_count(start, "start", 0, MAX_START)
        check_count(scale, "scale")
        if nrow is not None:
            check_count(nrow, "nrow")
        return plan_grid(self.model, n, self.labels(digits, name), nrow, scale, name, start)

    def batches(self, n: int, digits: Digits = None, seed: int = 0, start: int = 0,
                batch_size: int = 256) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index of the first image, uint8 images [count, H, W] or [count, H, W, 3]), batch by batch:
        memory stays bounded for any n."""
        grid = self.plan(n, digits, start=start)
        check_count(batch_size, "batch_size")
        return draw(self.model, grid, check_seed(seed), batch_size)

    def generate(self, n: int = 1, digits: Digits = None, seed: int = 0, start: int = 0) -> np.ndarray:
        """n images as uint8 [n, H, W] (grey) or [n, H, W, 3] (RGB), 0 black .. 255 white."""
        return np.concatenate([images for _, images in self.batches(n, digits, seed, start)])

    def images(self, n: int = 1, digits: Digits = None, seed: int = 0, start: int = 0,
               scale: int = 1) -> list:
        """n PIL images (nearest-neighbour upscaled by `scale`): what `mnist-gen infer --out-dir` writes."""
        from PIL import Image

        from .files import upscale

        check_count(scale, "scale")
        return [Image.fromarray(upscale(image, scale)) for image in self.generate(n, digits, seed, start)]

    def grid(self, n: int = 64, digits: Digits = None, seed: int = 0, nrow: int | None = None, scale: int = 1,
             start: int = 0):
        """One PIL image of n digits, `nrow` per row: the picture `mnist-gen infer --out` writes."""
        from PIL import Image

        grid = self.plan(n, digits, nrow, scale, start)
        grid.check_size()
        return Image.fromarray(render_grid(self.model, grid, check_seed(seed)))

    def walk(self, seed: int = 0, steps: int = 10, digit: int | str | None = None, to: int | str | None = None,
             to_seed: int | None = None, scale: int = 1, strip: bool = False):
        """A latent walk: `steps` PIL frames from image 0 of `seed` to image 1 (or to image 0 of `to_seed`);
        from `digit` to `to` the two digits cross-fade. `strip=True` gives one picture of the frames side by side."""
        from PIL import Image

        check_count(steps, "steps", 2)
        check_count(scale, "scale")
        label = None if digit is None else self.labels(digit, "digit")[0]
        end = None if to is None else self.labels(to, "to")[0]
        frames = render_walk(self.model, check_seed(seed), steps, label, end,
                             None if to_seed is None else check_seed(to_seed, "to_seed"), scale, "digit")
        return Image.fromarray(walk_strip(frames, scale)) if strip else [Image.fromarray(f) for f in frames]

    def __repr__(self) -> str:
        return f"<mnist_gen.Generator {self.path.name} on {self.provider}>"


def load(model: str | os.PathLike | None = None, provider: str = "auto", threads: int | None = None,
         conv_search: str = "EXHAUSTIVE") -> Generator:
    """Load a generator: `model` is an exported .onnx file, "fp32" / "int8" (a bundled one), or None:
    ./artifacts/generator.onnx if there, else the bundled one. `provider`: "auto" (CUDA if one image runs there,
    else CPU), "cpu" or "cuda"."""
    return Generator(load_generator(model, provider, threads, conv_search))


__all__ = ["Generator", "load"]
