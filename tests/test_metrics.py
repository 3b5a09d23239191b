"""`mnist-gen serve`'s /metrics (Prometheus text format, parsed by prometheus-client's own parser), its readiness,
and a SIGTERM that lets in-flight requests finish."""

import asyncio
import signal
import sys
import threading

import httpx2 as httpx
from conftest import http_get, served
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from infer.api import load
from infer.serve import create_app


def scrape(client) -> dict:
    """{(sample name, frozenset of labels): value}"""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_metrics_count_requests_by_route_and_status(cond_onnx):
    with TestClient(create_app(load(cond_onnx, "cpu"))) as client:
        for query in ("n=2&seed=0", "n=3&seed=1", "n=0"):
            client.get(f"/api/generate?{query}")
        client.get("/no/such/page")
        client.head("/healthz")
        samples = scrape(client)
    count = "mnist_gen_http_requests_total"
    assert samples[count, frozenset({("route", "/api/generate"), ("method", "GET"), ("status", "200")})] == 2
    assert samples[count, frozenset({("route", "/api/generate"), ("method", "GET"), ("status", "400")})] == 1
    assert samples[count, frozenset({("route", "other"), ("method", "GET"), ("status", "404")})] == 1
    assert samples[count, frozenset({("route", "/healthz"), ("method", "HEAD"), ("status", "200")})] == 1
    latency = "mnist_gen_http_request_duration_seconds_count"
    assert samples[latency, frozenset({("route", "/api/generate")})] == 3
    assert samples["mnist_gen_ready", frozenset()] == 1.0  # the warm-up ran at start-up
    assert samples["mnist_gen_renders_in_flight", frozenset()] == 0


def test_metrics_show_renders_waiting_and_503s(cond_onnx):
    app = create_app(load(cond_onnx, "cpu"), running=1, waiting=1)

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            async with app.state.gate.slot():  # the one render slot taken
                waiting = asyncio.create_task(client.get("/api/generate", params={"n": 1, "seed": 0}))
                await asyncio.sleep(0.2)
                during = (await client.get("/metrics")).text
                busy = await client.get("/api/generate", params={"n": 1, "seed": 0})
            await waiting
            return during, busy, (await client.get("/metrics")).text

    during, busy, after = asyncio.run(scenario())
    parsed = {s.name: s.value for f in text_string_to_metric_families(during) for s in f.samples if not s.labels}
    assert parsed["mnist_gen_renders_in_flight"] == 1 and parsed["mnist_gen_renders_waiting"] == 1
    assert busy.status_code == 503
    parsed = {s.name: s.value for f in text_string_to_metric_families(after) for s in f.samples if not s.labels}
    assert parsed["mnist_gen_busy_rejections_total"] == 1 and parsed["mnist_gen_renders_waiting"] == 0


def test_not_ready_until_the_warm_up_passed(cond_onnx):
    app = create_app(load(cond_onnx, "cpu"))
    client = TestClient(app)  # no `with`: the start-up (and its warm-up) has not run
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/mnist_gen/ready").status_code == 503
    with client:
        for _ in range(100):
            if client.get("/v2/health/ready").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert client.get("/v2/health/ready").status_code == 200


def test_sigterm_finishes_requests_in_flight_and_exits_0(cond_onnx):
    with served(sys.executable, "-m", "infer", "serve", "--model", str(cond_onnx), "--port", "0") as (process, url):
        results = []

        def request():
            results.append(http_get(url + "api/generate?n=256&scale=4&seed=1")[0])

        threads = [threading.Thread(target=request) for _ in range(4)]
        for thread in threads:
            thread.start()
        threading.Event().wait(0.3)  # the requests are in flight
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        process.wait(timeout=30)
        stderr = process.stderr.read()
    assert results == [200] * 4, results
    assert process.returncode == 0 and "Traceback" not in stderr
