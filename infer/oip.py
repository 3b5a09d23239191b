"""The Open Inference Protocol (KServe v2, as NVIDIA Triton speaks it over HTTP), without the web framework.

`mnist-gen serve` answers /v2/... with the model name, inputs and outputs of the Triton repository that
`python -m exporter --triton-repo` writes, so one client (tritonclient's InferenceServerClient) works against both.
Tensors come as JSON (`data`) or in Triton's binary tensor data extension (raw little-endian bytes after the JSON
header, whose length is the Inference-Header-Content-Length header); tritonclient uses the binary form by default.
numpy only: the routes live in serve.py.
"""

from __future__ import annotations

import json

import numpy as np

from . import __version__
from .errors import BadValue
from .images import MAX_IMAGES

MODEL_NAME = "mnist_gen"  # the Triton repository's model folder (exporter/triton.py) and the v2 routes' name
MODEL_VERSION = "1"
MAX_BATCH = MAX_IMAGES  # images per request: the server's cap on every route, and the Triton config's max_batch_size
# cuDNN's convolution algorithm search on CUDA, for servers: a request may bring any batch size from 1 to
# MAX_BATCH, and onnxruntime's default (EXHAUSTIVE) benchmarks every algorithm on the first request of each new
# shape, so up to 256 requests would each pay a search. HEURISTIC picks from cuDNN's own ranking at once.
SERVER_CONV_SEARCH = "HEURISTIC"
DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
          "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
HEADER_LENGTH = "Inference-Header-Content-Length"


def server_metadata() -> dict:
    return {"name": "mnist-gen", "version": __version__, "extensions": ["binary_tensor_data"]}


def input_specs(model) -> dict[str, tuple[str, list[int]]]:
    """name -> (datatype, shape with -1 for the batch), as the Triton config declares them."""
    specs = {"z": ("FP32", [-1, model.latent_dim])}
    if model.num_classes:
        specs["labels"] = ("INT64", [-1, 1])  # Triton's dims: [1] reshaped to the graph's [batch]
    return specs


def model_metadata(model) -> dict:
    size, channels = model.image_size, model.channels
    return {
        "name": MODEL_NAME, "versions": [MODEL_VERSION], "platform": "onnxruntime_onnx",
        "inputs": [{"name": name, "datatype": dtype, "shape": shape} for name, (dtype, shape) in
                   input_specs(model).items()],
        "outputs": [{"name": "images", "datatype": "FP32", "shape": [-1, channels, size, size]}],
    }


def _split(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header and the binary data that follows it."""
    if header_length is None:
        size = len(body)
    elif not header_length.isdigit() or int(header_length) > len(body):
        raise BadValue(f"{HEADER_LENGTH} {header_length!r} does not fit a body of {len(body)} bytes")
    else:
        size = int(header_length)
    try:
        header = json.loads(body[:size])
    except (ValueError, UnicodeDecodeError) as e:
        raise BadValue(f"the request is not JSON ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadValue("the request has no \"inputs\" list")
    return header, body[size:]


def _shape(tensor: dict, name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadValue(f"input {name}: shape must be a list of non-negative integers, got {shape!r}")
    return shape


def _array(tensor: dict, name: str, dtype: str, shape: list[int], binary: bytes, offset: int) -> tuple:
    """(numpy array, bytes of binary data used) of one input tensor."""
    count = int(np.prod(shape, dtype=np.int64))
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        expected = count * np.dtype(DTYPES[dtype]).itemsize
        if size != expected or offset + size > len(binary):
            raise BadValue(f"input {name}: {size} bytes of binary data for shape {shape} of {dtype} "
                           f"({expected} expected, {len(binary) - offset} sent)")
        return np.frombuffer(binary, DTYPES[dtype], count, offset).reshape(shape), size
    if "data" not in tensor:
        raise BadValue(f"input {name}: neither \"data\" nor binary data")
    try:
        flat = np.asarray(tensor["data"], dtype=DTYPES[dtype]).reshape(-1)
    except (ValueError, TypeError, OverflowError):
        raise BadValue(f"input {name}: data is not a (nested) list of {dtype} numbers") from None
    if flat.size != count:
        raise BadValue(f"input {name}: {flat.size} values for shape {shape} ({count} expected)")
    return flat.reshape(shape), 0


def decode_request(body: bytes, header_length: str | None, model) -> tuple[dict, dict]:
    """(the JSON header, {input name: array}) of an infer request, or BadValue naming what is wrong."""
    header, binary = _split(body, header_length)
    specs, arrays, offset = input_specs(model), {}, 0
    for tensor in header["inputs"]:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if name not in specs or name in arrays:
            raise BadValue(f"input {name!r}: this model takes {', '.join(specs)}, once each")
        dtype, expected = specs[name]
        if tensor.get("datatype") != dtype:
            raise BadValue(f"input {name}: datatype must be {dtype}, got {tensor.get('datatype')!r}")
        shape = _shape(tensor, name)
        if name == "labels" and len(shape) == 1:
            shape = [*shape, 1]  # [batch] as the ONNX graph has it, [batch, 1] as Triton's config does
        if len(shape) != len(expected) or shape[1:] != expected[1:] or not 1 <= shape[0] <= MAX_BATCH:
            raise BadValue(f"input {name}: shape must be [1..{MAX_BATCH}, {', '.join(map(str, expected[1:]))}], "
                           f"got {tensor.get('shape')}")
        arrays[name], used = _array(tensor, name, dtype, shape, binary, offset)
        offset += used
    if set(arrays) != set(specs):
        raise BadValue(f"missing input {', '.join(sorted(set(specs) - set(arrays)))}")
    if offset != len(binary):
        raise BadValue(f"{len(binary) - offset} bytes of binary data belong to no input")
    if len({array.shape[0] for array in arrays.values()}) > 1:
        raise BadValue("inputs z and labels have different batch sizes")
    return header, arrays


def wants_binary(header: dict) -> bool:
    """Binary output if the request asks for it (tritonclient's default), as Triton decides."""
    for output in header.get("outputs") or []:
        if isinstance(output, dict) and output.get("name") == "images":
            return bool((output.get("parameters") or {}).get("binary_data", False))
    return bool((header.get("parameters") or {}).get("binary_data_output", False))


def check_outputs(header: dict) -> None:
    for output in header.get("outputs") or []:
        if not isinstance(output, dict) or output.get("name") != "images":
            raise BadValue("this model has one output, images")


def encode_response(header: dict, images: np.ndarray) -> tuple[bytes, dict]:
    """(body, extra headers) of the response carrying `images` float32 [N, C, H, W]."""
    images = np.ascontiguousarray(images, dtype="<f4")
    output = {"name": "images", "datatype": "FP32", "shape": list(images.shape)}
    response = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION, "outputs": [output]}
    if "id" in header:
        response["id"] = header["id"]
    if not wants_binary(header):
        output["data"] = images.reshape(-1).tolist()
        return json.dumps(response).encode(), {}
    raw = images.tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    text = json.dumps(response).encode()
    return text + raw, {HEADER_LENGTH: str(len(text))}
