"""An exported generator as an NVIDIA Triton Inference Server model repository.

`python -m exporter generator.pth --triton-repo models/` writes

    models/mnist_gen/config.pbtxt     platform onnxruntime_onnx, inputs/outputs, dynamic batching, metadata
    models/mnist_gen/1/model.onnx     the exported file, byte for byte

Everything in config.pbtxt is read off the ONNX file itself (its inputs, output and metadata), so the
config cannot disagree with the model it serves. Triton owns the batch axis (`max_batch_size`), so
dims are given without it; `labels` is [batch] in the graph, which Triton spells `dims: [ 1 ]` with
`reshape: { shape: [ ] }` (clients send it as [batch, 1]).
"""

from __future__ import annotations

from pathlib import Path

from infer.errors import UserError
from infer.files import atomic_path
from infer.oip import MAX_BATCH as MAX_BATCH_SIZE  # the same model name and batch cap as `mnist-gen serve`'s /v2
from infer.oip import MODEL_NAME, SERVER_CONV_SEARCH

QUEUE_DELAY_US = 500  # how long the dynamic batcher may hold a request to group it with others
TRITON_TYPES = {1: "TYPE_FP32", 7: "TYPE_INT64", 10: "TYPE_FP16"}  # onnx.TensorProto data types
# The onnxruntime backend's cudnn_conv_algo_search parameter (0 EXHAUSTIVE, its default; 1 HEURISTIC; 2 DEFAULT),
# in the form its README documents for it: the server's choice, for the server's reason (infer/oip.py).
CONV_SEARCH_CODES = {"EXHAUSTIVE": "0", "HEURISTIC": "1", "DEFAULT": "2"}


def _tensor(value_info) -> tuple[str, str, list]:
    """(name, Triton data type, dims without the batch axis) of an ONNX graph input or output."""
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type not in TRITON_TYPES:
        raise UserError(f"Triton repository: {value_info.name} has an ONNX type ({tensor_type.elem_type}) "
                        "this exporter does not map")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
    return value_info.name, TRITON_TYPES[tensor_type.elem_type], dims[1:]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor_block(name: str, data_type: str, dims: list) -> str:
    lines = ["  {", f"    name: {_quote(name)}", f"    data_type: {data_type}"]
    if dims:
        lines.append(f"    dims: [ {', '.join(map(str, dims))} ]")
    else:  # a [batch] tensor: Triton needs one non-empty dim, reshaped away for the model
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "\n".join(lines + ["  }"])


def config_text(model, max_batch_size: int = MAX_BATCH_SIZE) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for an onnx.ModelProto."""
    inputs = [_tensor_block(*_tensor(i)) for i in model.graph.input]
    outputs = [_tensor_block(*_tensor(o)) for o in model.graph.output]
    parameters = [
        f"parameters {{\n  key: {_quote(p.key)}\n  value: {{ string_value: {_quote(p.value)} }}\n}}"
        for p in sorted(model.metadata_props, key=lambda p: p.key)
    ]
    return "\n".join([
        f"name: {_quote(MODEL_NAME)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(inputs) + "\n]",
        "output [\n" + ",\n".join(outputs) + "\n]",
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}",
        f'parameters {{\n  key: "cudnn_conv_algo_search"\n  value: {{ string_value: '
        f'"{CONV_SEARCH_CODES[SERVER_CONV_SEARCH]}" }}\n}}',
        *parameters,
    ]) + "\n"


def write_triton_repo(onnx_file: str | Path, repo: str | Path, max_batch_size: int = MAX_BATCH_SIZE) -> Path:
    """Write REPO/mnist_gen/{config.pbtxt, 1/model.onnx} from an exported generator. Returns the model folder."""
    import onnx

    data = Path(onnx_file).read_bytes()
    model = onnx.load_model_from_string(data)
    config = config_text(model, max_batch_size)
    folder = Path(repo) / MODEL_NAME
    try:
        with atomic_path(folder / "1" / "model.onnx") as tmp:
            tmp.write_bytes(data)
        with atomic_path(folder / "config.pbtxt") as tmp:  # last: Triton sees a config only with its model
            tmp.write_text(config)
    except OSError as e:
        raise UserError(f"--triton-repo {repo}: cannot write ({e.strerror or e})") from None
    return folder
