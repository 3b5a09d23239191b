"""mnist-gen exporter: a trained generator to one ONNX file (`python -m exporter`)."""

from infer.extras import require_torch

require_torch("python -m exporter")
