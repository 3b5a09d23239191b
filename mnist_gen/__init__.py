"""mnist-gen's Python API: generate MNIST digits from an exported generator with onnxruntime, no torch needed.

    import mnist_gen

    generator = mnist_gen.load()                       # bundled model; load("my.onnx"), load(provider="cpu")
    digits = generator.generate(16, digits=7, seed=1)  # numpy uint8 [16, 28, 28]
    generator.grid(64, seed=0).save("grid.png")        # a PIL image: what `mnist-gen infer --n 64 --seed 0` writes

See help(mnist_gen.Generator). Errors are ValueError (bad arguments) or OSError (model files).
"""

from infer import __version__
from infer.api import Generator, load
from infer.errors import BadFile, BadValue
from infer.noise import MAX_SEED, latents

__all__ = ["Generator", "load", "latents", "BadFile", "BadValue", "MAX_SEED", "__version__"]
