"""`python -m exporter --triton-repo`: a model repository Triton's own config schema accepts, true to the ONNX file."""

import onnx
import onnxruntime as ort
import pytest
from conftest import assert_one_line_error, in_process, python_m
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from exporter.cli import main as exporter_main

ONNX_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64"}


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_triton_repository_matches_the_onnx_file(models, tmp_path, conditional):
    pth, _, _ = models[28, conditional]
    repo = tmp_path / "models"
    args = [str(pth), "--out", str(tmp_path / "g.onnx"), "--triton-repo", str(repo), "--triton-max-batch-size", "64"]
    # The conditional one as users run it; the other in-process (the same main, no interpreter start).
    result = python_m("exporter", *args) if conditional else in_process(exporter_main, *args)
    assert result.returncode == 0, result.stderr
    folder = repo / "mnist_gen"
    assert (folder / "1" / "model.onnx").read_bytes() == (tmp_path / "g.onnx").read_bytes()

    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == folder.name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert config.HasField("dynamic_batching")

    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    triton_type = {v: k for k, v in model_config_pb2.DataType.items()}
    for declared, actual in [*zip(config.input, session.get_inputs(), strict=True),
                             *zip(config.output, session.get_outputs(), strict=True)]:
        assert declared.name == actual.name
        assert triton_type[declared.data_type] == ONNX_TO_TRITON[actual.type]
        per_item = actual.shape[1:]  # Triton's dims leave out the batch axis
        if per_item:
            assert list(declared.dims) == per_item
        else:  # [batch] in the graph: one dim for the API, reshaped away for the model
            assert list(declared.dims) == [1] and declared.HasField("reshape") and not declared.reshape.shape
    assert [i.name for i in config.input] == (["z", "labels"] if conditional else ["z"])
    assert len(config.output) == 1 and list(config.output[0].dims) == [1, 28, 28]

    metadata = {p.key: p.value for p in onnx.load(folder / "1" / "model.onnx").metadata_props}
    # the model's metadata, and the onnxruntime backend's convolution search (1 = HEURISTIC, chosen in infer/oip.py)
    assert {k: v.string_value for k, v in config.parameters.items()} == {**metadata, "cudnn_conv_algo_search": "1"}


def test_bad_triton_batch_size_writes_nothing(models, tmp_path):
    result = in_process(exporter_main, str(models[28, True][0]), "--out", str(tmp_path / "g.onnx"),
                        "--triton-repo", str(tmp_path / "models"), "--triton-max-batch-size", "0")
    assert_one_line_error(result)
    assert not list(tmp_path.iterdir())
