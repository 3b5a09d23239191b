"""`mnist-gen serve`: the HTTP API on real onnxruntime and real exported models, and the command itself."""

import asyncio
import base64
import io
import json
import signal
import sys

import httpx2 as httpx
import numpy as np
import pytest
from conftest import assert_one_line_error, http_get, python_m, served
from fastapi.testclient import TestClient
from PIL import Image

from infer.api import load
from infer.serve import MAX_N, MAX_SCALE, create_app


@pytest.fixture(scope="module")
def client(cond_onnx):
    with TestClient(create_app(load(cond_onnx, "cpu"))) as client:  # `with`: the app's start-up (warm-up) runs
        yield client


@pytest.fixture(scope="module")
def uncond_client(uncond_onnx):
    with TestClient(create_app(load(uncond_onnx, "cpu"))) as client:
        yield client


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("options", [
    {"n": 20, "seed": 3},                               # digits 0-9 in turn, 10 per row
    {"digit": 7, "n": 12, "seed": 5, "scale": 2},
    {"n": 7, "seed": 11, "nrow": 3, "scale": 3},
])
def test_generate_png_is_byte_identical_to_mnist_gen_infer(client, cond_onnx, tmp_path, options):
    out = tmp_path / "grid.png"
    args = [a for key, value in options.items() for a in (f"--{key}", str(value))]
    result = python_m("infer", "infer", "--model", str(cond_onnx), *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    response = client.get("/api/generate", params=options)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == str(options["seed"])
    assert response.content == out.read_bytes()


def test_generate_json_gives_each_image_as_infer_out_dir_does(client, cond_onnx, tmp_path):
    result = python_m("infer", "infer", "--model", str(cond_onnx), "--n", "6", "--digit", "4", "--seed", "2",
                      "--scale", "2", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    body = client.get("/api/generate", params={"n": 6, "digit": 4, "seed": 2, "scale": 2, "format": "json"}).json()
    assert body["seed"] == 2 and len(body["images"]) == 6
    for i, image in enumerate(body["images"]):
        assert image["index"] == i and image["digit"] == 4 and image["seed"] == 2
        assert base64.b64decode(image["png"]) == (tmp_path / f"{i:06d}_digit4.png").read_bytes()


def test_each_json_image_says_what_draws_it_alone(client, cond_onnx, tmp_path):
    """format=json used to report the request's seed only; now each image's route and command redraw it alone."""
    seed = 2**64 - 2  # seeds span 0..2^64-1 on every surface
    body = client.get("/api/generate", params={"n": 12, "digit": "3,5", "seed": seed, "format": "json"}).json()
    image = body["images"][9]
    assert image["index"] == 9 and image["digit"] == 5
    alone = client.get(image["reproduce"]["api"])
    assert alone.status_code == 200 and pixels(alone.content)[2:-2, 2:-2].tolist() == \
        pixels(base64.b64decode(image["png"])).tolist()
    command = image["reproduce"]["cli"].split()
    assert command[:2] == ["mnist-gen", "infer"]
    result = python_m("infer", *command[1:], "--model", str(cond_onnx), "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "000009_digit5.png").read_bytes() == base64.b64decode(image["png"])


def test_query_takes_what_the_cli_takes(client, cond_onnx, tmp_path):
    """Digit lists, class names and seeds above 2^63 as the CLI takes them; the same bytes."""
    out = tmp_path / "grid.png"
    python_m("infer", "infer", "--model", str(cond_onnx), "--n", "6", "--digit", "0,1", "--seed", str(2**63 + 1),
             "--out", str(out))
    response = client.get("/api/generate", params={"n": 6, "digit": "0,1", "seed": 2**63 + 1})
    assert response.status_code == 200 and response.content == out.read_bytes()


def test_head_answers_every_get_route(client):
    for route in ("/", "/healthz", "/api/info", "/api/generate?n=1&seed=0", "/metrics", "/v2/health/ready"):
        get, head = client.get(route), client.head(route)
        assert head.status_code == get.status_code == 200, route
        assert head.content == b"" and head.headers.get("content-type") == get.headers.get("content-type")


def test_random_seed_is_reported_and_reproduces(client):
    first = client.get("/api/generate", params={"n": 4})
    seed = int(first.headers["x-seed"])
    again = client.get("/api/generate", params={"n": 4, "seed": seed})
    assert again.content == first.content
    assert client.get("/api/generate", params={"n": 4, "seed": seed + 1}).content != first.content


def test_unconditional_model(uncond_client):
    body = uncond_client.get("/api/generate", params={"n": 3, "seed": 0, "format": "json"}).json()
    assert [image["digit"] for image in body["images"]] == [None, None, None]
    response = uncond_client.get("/api/generate", params={"digit": 3})
    assert response.status_code == 400 and "unconditional" in response.json()["error"]


def test_interpolate(client):
    params = {"seed": 1, "digit": 3, "to": 8, "steps": 6, "scale": 2}
    strip = client.get("/api/interpolate", params=params)
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"
    assert pixels(strip.content).shape == (28 * 2 + 8, 6 * (28 * 2 + 4) + 4)
    gif = client.get("/api/interpolate", params={**params, "format": "gif"})
    assert gif.headers["content-type"] == "image/gif" and Image.open(io.BytesIO(gif.content)).n_frames == 6 + 4
    frames = client.get("/api/interpolate", params={**params, "format": "json"}).json()["frames"]
    assert len(frames) == 6 and len({f for f in frames}) == 6  # it moves
    # Between two seeds, the walk ends on the first digit each seed draws in a grid.
    walk = client.get("/api/interpolate", params={"seed": 4, "to_seed": 9, "digit": 2, "steps": 3, "scale": 1,
                                                  "format": "json"}).json()["frames"]
    for seed, frame in [(4, walk[0]), (9, walk[-1])]:
        grid = pixels(client.get("/api/generate", params={"n": 1, "digit": 2, "seed": seed}).content)
        assert np.array_equal(pixels(base64.b64decode(frame)), grid[2:-2, 2:-2])


def test_info_health_schema_and_page(client):
    info = client.get("/api/info").json()
    assert info["provider"] == "CPUExecutionProvider" and info["latent_dim"] == 100
    assert info["num_classes"] == 10 and info["metadata"]["training_epochs"] == "1"
    assert info["class_names"] == [str(d) for d in range(10)] and info["channels"] == 1
    assert info["limits"]["n"] == MAX_N and info["limits"]["scale"] == MAX_SCALE
    assert "/" not in info["model"]  # a file name, not where the server keeps it
    assert client.get("/healthz").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/generate", "/api/interpolate", "/api/info", "/healthz"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/noise.js", "/static/render.js", "/static/style.css"):
        assert f'"{asset[1:]}"' in page.text  # relative, so the same page works below a path (mnist-gen site)
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text  # nothing from a CDN: works offline
    assert "https://" not in page.text


@pytest.mark.parametrize("query, status, message", [
    ({"n": 0}, 400, "n=0: Input should be greater than or equal to 1"),
    ({"n": MAX_N + 1}, 400, f"less than or equal to {MAX_N}"),
    ({"n": "ten"}, 400, "n=ten: Input should be a valid integer"),
    ({"scale": MAX_SCALE + 1}, 400, f"scale={MAX_SCALE + 1}"),
    ({"seed": -1}, 400, "seed=-1"),
    ({"seed": 2**64}, 400, f"seed={2**64}"),
    ({"digit": 10}, 400, "digit 10: digits must be in 0..9"),
    ({"digit": -1}, 400, "digit -1: digits must be in 0..9"),
    ({"digit": "1,,2"}, 400, "digit '1,,2'"),
    ({"digit": "seven"}, 400, "digit 'seven'"),
    ({"format": "jpeg"}, 400, "format=jpeg"),
    ({"nrow": 0}, 400, "nrow=0"),
    ({"bogus": 1}, 400, "unknown parameter bogus"),
])
def test_bad_input_is_one_line_of_json(client, query, status, message):
    response = client.get("/api/generate", params=query)
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"] and message in response.json()["error"], response.text
    assert "\n" not in response.text


def test_bad_walks(client):
    for query, message in [({"steps": 1}, "steps=1"), ({"steps": 33}, "steps=33"), ({"digit": 1, "to": 12}, "12"),
                           ({"to_seed": "x"}, "to_seed=x"), ({"to": 3}, "to needs digit"),
                           ({"frames": 3}, "unknown parameter frames")]:
        response = client.get("/api/interpolate", params=query)
        assert response.status_code == 400 and message in response.json()["error"], response.text


def test_size_cap_is_shared_with_infer(models):
    """A 64x64 model at the largest n and scale would pass 8192x8192 pixels: refused before rendering."""
    client = TestClient(create_app(load(models[64, True][1], "cpu")))
    response = client.get("/api/generate", params={"n": MAX_N, "scale": MAX_SCALE})
    assert response.status_code == 400 and "over the cap of 67,108,864 (8192x8192)" in response.json()["error"]


def test_unknown_routes_and_methods(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/static/../serve.py").status_code == 404  # no way out of the page's folder
    for route in ("/api/generate", "/api/interpolate", "/api/info", "/healthz"):
        for method in ("POST", "PUT", "DELETE"):
            response = client.request(method, route)
            assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}


def test_saturated_server_answers_503_at_once_and_recovers(cond_onnx):
    app = create_app(load(cond_onnx, "cpu"), running=1, waiting=0)

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            async with app.state.gate.slot():  # the one render slot taken, no place to wait
                busy = await client.get("/api/generate", params={"n": 1, "seed": 0})
                health = await client.get("/healthz")  # not rendering: not gated
            after = await client.get("/api/generate", params={"n": 1, "seed": 0})
            return busy, health, after

    busy, health, after = asyncio.run(scenario())
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
    assert health.status_code == 200 and after.status_code == 200


def test_concurrent_requests_within_the_bounds_all_answer(cond_onnx):
    app = create_app(load(cond_onnx, "cpu"), running=2, waiting=6)

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await asyncio.gather(*[client.get("/api/generate", params={"n": 32, "seed": 1}) for _ in range(8)])

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.content for r in responses}) == 1  # the same seed gives the same bytes, however many at once


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_serves_then_stops_cleanly(cond_onnx, tmp_path, stop):
    command = [sys.executable, "-m", "infer", "serve", "--model", str(cond_onnx), "--port", "0"]
    with served(*command, cwd=tmp_path) as (process, url):
        assert url.startswith("http://127.0.0.1:")
        status, headers, body = http_get(url + "api/generate?n=10&seed=0")
        assert status == 200 and headers["content-type"] == "image/png" and pixels(body).shape == (32, 302)
        status, _, body = http_get(url + "api/generate?n=100000")
        assert status == 400 and "less than or equal to" in json.loads(body)["error"]
        # A second server on the same port: one line, exit 2, before loading anything.
        port = url.rstrip("/").rsplit(":", 1)[1]
        taken = python_m("infer", "serve", "--model", str(cond_onnx), "--port", port, cwd=tmp_path)
        assert_one_line_error(taken)
        assert taken.returncode == 2 and "already in use" in taken.stderr
        process.send_signal(stop)
        process.wait(timeout=20)
        stderr = process.stderr.read()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped" in stderr
    assert not list(tmp_path.iterdir()), "the server wrote files"


def test_serve_on_all_interfaces_says_so(cond_onnx):
    with served(sys.executable, "-m", "infer", "serve", "--model", str(cond_onnx), "--host", "0.0.0.0",
                "--port", "0") as (process, url):
        assert url.startswith("http://0.0.0.0:")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        assert "reachable from the network" in process.stderr.read()


def test_serve_bad_input_is_one_line(cond_onnx, tmp_path):
    for args, message in [
        (["--model", str(tmp_path / "missing.onnx"), "--port", "0"], "no such file"),
        (["--model", str(cond_onnx), "--port", "70000"], "--port must be in 0..65535"),
        (["--model", str(cond_onnx), "--host", "no-such-host.invalid", "--port", "0"], "cannot listen"),
        (["--model", str(cond_onnx), "--provider", "tpu", "--port", "0"], "provider"),
    ]:
        result = python_m("infer", "serve", *args, cwd=tmp_path, timeout=60)
        assert_one_line_error(result)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_serve_help_names_the_extra():
    result = python_m("infer", "serve", "--help")
    assert result.returncode == 0 and 'pip install "mnist-gen[serve]"' in " ".join(result.stdout.split())


def test_a_colour_model_with_named_classes(rgb_onnx):
    client = TestClient(create_app(load(rgb_onnx, "cpu")))
    info = client.get("/api/info").json()
    assert info["class_names"] == ["cat", "dog", "fox"] and info["channels"] == 3
    grid = client.get("/api/generate", params={"digit": 2, "n": 4, "seed": 0})
    assert grid.status_code == 200 and Image.open(io.BytesIO(grid.content)).mode == "RGB"
