"""The Open Inference Protocol (KServe v2) of `mnist-gen serve`, spoken by Triton's own client, unchanged."""

import json
import sys
import time
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from conftest import REPO, run, served
from tritonclient.utils import InferenceServerException

from infer.oip import MAX_BATCH, MODEL_NAME


@pytest.fixture(scope="module")
def server(cond_onnx):
    with served(sys.executable, "-m", "infer", "serve", "--model", str(cond_onnx), "--port", "0") as (_, url):
        client = httpclient.InferenceServerClient(url.removeprefix("http://").rstrip("/"))
        deadline = time.time() + 60
        while not client.is_server_ready() and time.time() < deadline:  # ready once the warm-up run passed
            time.sleep(0.1)
        yield url, client


def expected_images(model, z, labels):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"z": z, "labels": labels})[0]


def inputs(n, binary=True, labels_shape=None):
    z = np.random.default_rng(n).standard_normal((n, 100), dtype=np.float32)
    labels = (np.arange(n) % 10).astype(np.int64)
    tensors = [httpclient.InferInput("z", [n, 100], "FP32"),
               httpclient.InferInput("labels", labels_shape or [n, 1], "INT64")]
    tensors[0].set_data_from_numpy(z, binary_data=binary)
    tensors[1].set_data_from_numpy(labels.reshape(labels_shape or [n, 1]), binary_data=binary)
    return z, labels, tensors


def test_health_and_metadata_as_triton_has_them(server, cond_onnx):
    _, client = server
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = client.get_model_metadata(MODEL_NAME)
    assert meta["name"] == MODEL_NAME and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 100]},
                              {"name": "labels", "datatype": "INT64", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert client.get_model_metadata(MODEL_NAME, model_version="1")["name"] == MODEL_NAME
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("other")


@pytest.mark.parametrize("n, binary", [(1, True), (17, True), (5, False), (MAX_BATCH, True)])
def test_infer_gives_the_model_images(server, cond_onnx, n, binary):
    _, client = server
    z, labels, tensors = inputs(n, binary)
    outputs = [httpclient.InferRequestedOutput("images", binary_data=binary)]
    result = client.infer(MODEL_NAME, tensors, outputs=outputs, request_id="r1")
    images = result.as_numpy("images")
    assert images.shape == (n, 1, 28, 28) and images.dtype == np.float32
    np.testing.assert_allclose(images, expected_images(cond_onnx, z, labels), atol=1e-5)
    assert result.get_response()["id"] == "r1"


def test_infer_with_client_defaults_and_graph_shaped_labels(server, cond_onnx):
    """No outputs named (binary output, tritonclient's default) and labels as the ONNX graph has them, [n]."""
    _, client = server
    z, labels, tensors = inputs(3, labels_shape=[3])
    images = client.infer(MODEL_NAME, tensors).as_numpy("images")
    np.testing.assert_allclose(images, expected_images(cond_onnx, z, labels), atol=1e-5)


def post(url, body: bytes, headers: dict | None = None):
    request = urllib.request.Request(url + f"v2/models/{MODEL_NAME}/infer", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def tensor(name, datatype, shape, data=None, size=None):
    spec = {"name": name, "datatype": datatype, "shape": shape}
    if size is not None:
        spec["parameters"] = {"binary_data_size": size}
    else:
        spec["data"] = data
    return spec


@pytest.mark.parametrize("request_inputs, binary, message", [
    ([tensor("z", "FP32", [1, 100], [0.0] * 100)], b"", "missing input labels"),
    ([tensor("z", "FP64", [1, 100], [0.0] * 100), tensor("labels", "INT64", [1, 1], [0])], b"",
     "datatype must be FP32"),
    ([tensor("z", "FP32", [1, 99], [0.0] * 99), tensor("labels", "INT64", [1, 1], [0])], b"", "shape must be"),
    ([tensor("z", "FP32", [MAX_BATCH + 1, 100], size=(MAX_BATCH + 1) * 400),
      tensor("labels", "INT64", [MAX_BATCH + 1, 1], size=(MAX_BATCH + 1) * 8)], b"", f"[1..{MAX_BATCH}, 100]"),
    ([tensor("z", "FP32", [1, 100], [0.0] * 7), tensor("labels", "INT64", [1, 1], [0])], b"", "7 values"),
    ([tensor("z", "FP32", [1, 100], size=400), tensor("labels", "INT64", [1, 1], size=8)], bytes(404),
     "binary data"),
    ([tensor("z", "FP32", [1, 100], [0.0] * 100), tensor("labels", "INT64", [1, 1], [10])], b"",
     "labels must be in 0..9"),
    ([tensor("z", "FP32", [1, 100], ["a"] * 100), tensor("labels", "INT64", [1, 1], [0])], b"", "FP32 numbers"),
    ([tensor("z", "FP32", [2, 100], [0.0] * 200), tensor("labels", "INT64", [1, 1], [0])], b"",
     "different batch sizes"),
    ([tensor("x", "FP32", [1, 100], [0.0] * 100)], b"", "input 'x'"),
])
def test_malformed_tensors_are_a_400_with_the_protocol_error(server, request_inputs, binary, message):
    url, _ = server
    header = json.dumps({"inputs": request_inputs}).encode()
    status, body = post(url, header + binary, {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and list(json.loads(body)) == ["error"] and message in json.loads(body)["error"], body


def test_unparsable_and_oversized_bodies(server):
    url, _ = server
    status, body = post(url, b"{not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]
    # A declared 9 MB body is refused before a byte of it is read.
    import http.client
    from urllib.parse import urlsplit

    connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=60)
    connection.putrequest("POST", f"/v2/models/{MODEL_NAME}/infer")
    connection.putheader("Content-Length", str(9 * 2**20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "over the cap" in json.loads(response.read())["error"]
    connection.close()


def test_example_client_script_runs_against_serve(server, tmp_path):
    """The README's client script, unchanged, against `mnist-gen serve` (the same runs against Triton)."""
    url, _ = server
    out = tmp_path / "sevens.png"
    result = run(sys.executable, str(REPO / "examples" / "oip_client.py"), url.removeprefix("http://").rstrip("/"),
                 "--n", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0 and "4 images of digit 7" in result.stdout


def test_triton_config_declares_what_serve_answers(cond_onnx, tmp_path):
    """One name, one batch cap, one convolution search choice for both servers."""
    from exporter.triton import write_triton_repo

    config = (write_triton_repo(cond_onnx, tmp_path) / "config.pbtxt").read_text()
    assert f'name: "{MODEL_NAME}"' in config and f"max_batch_size: {MAX_BATCH}" in config
    assert 'key: "cudnn_conv_algo_search"\n  value: { string_value: "1" }' in config  # 1 = HEURISTIC
