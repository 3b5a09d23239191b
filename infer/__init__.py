"""mnist-gen runtime: generate MNIST digits from an exported ONNX generator, without torch."""

__version__ = "0.1.0"
