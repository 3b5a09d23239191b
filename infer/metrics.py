"""Prometheus metrics of `mnist-gen serve` (prometheus-client), and the ASGI layer that records every request.

One registry per app, so servers (and tests) in one process never share counters.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: a one-image PNG takes milliseconds, a 256-image grid with encoding up to about a second on a busy CPU.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, gate, ready):
        """`gate` counts renders running and waiting; `ready()` says whether the model has passed its warm-up."""
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("mnist_gen_http_requests", "HTTP requests answered, by route template, method "
                                "and status", ["route", "method", "status"], registry=registry)
        self.latency = Histogram("mnist_gen_http_request_duration_seconds", "Time to answer, by route template",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.rejected = Counter("mnist_gen_busy_rejections", "Requests answered 503 at once because every render "
                                "slot and queue place was taken", registry=registry)
        Gauge("mnist_gen_renders_in_flight", "Renders running now", registry=registry).set_function(
            lambda: gate.in_flight)
        Gauge("mnist_gen_renders_waiting", "Requests queued for a render slot", registry=registry).set_function(
            lambda: gate.waiting)
        Gauge("mnist_gen_ready", "1 once the model is loaded and its warm-up run passed", registry=registry
              ).set_function(lambda: float(ready()))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Observe:
    """ASGI middleware: HEAD on every GET route (the GET's headers, no body: uptime checks use it), and one
    count and one latency observation per request, labelled by route template, never by raw path."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method = scope["method"]
        if method == "HEAD":
            scope = {**scope, "method": "GET"}
        status, start = 500, time.perf_counter()

        async def answer(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif method == "HEAD" and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
