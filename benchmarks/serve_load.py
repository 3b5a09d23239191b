"""Load test of `mnist-gen serve` on loopback, beside the same work called in-process.

Starts the server on a free 127.0.0.1 port and drives it with 64 concurrent keep-alive clients for 30 s on each
of: the PNG route at n=1 and n=64 (/api/generate) and the Open Inference Protocol route at batch 1 and 64
(/v2/models/mnist_gen/infer, binary tensors as tritonclient sends them). Prints requests/s, p50 and p99 latency
of the answered requests, errors (anything but 200 and the server's fast 503 once saturated: must be 0), the
503s and their p99 (they must come back at once), and the server's RSS before and after (no growth). The
reference is the same work in this process, one call at a time; the ratio is what the server keeps of it.
It stops by itself; --quick (2 s per route, a few seconds in all) is what CI runs.

    python benchmarks/serve_load.py [--model FILE.onnx] [--clients 64] [--seconds 30] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infer.oip import HEADER_LENGTH, MODEL_NAME  # noqa: E402 - after the path above


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "infer", "serve", "--model", str(model), "--host", "127.0.0.1",
                               "--port", "0", "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    ready, _, _ = select.select([server.stdout], [], [], 60)
    line = server.stdout.readline() if ready else ""
    if not line.startswith("serving http://127.0.0.1:"):
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, line.split()[1]


def infer_body(batch: int, latent_dim: int) -> tuple[bytes, dict]:
    """A v2 infer request as tritonclient sends it: JSON header, then z and labels as raw bytes."""
    z = np.random.default_rng(batch).standard_normal((batch, latent_dim), dtype=np.float32)
    labels = (np.arange(batch) % 10).astype(np.int64).reshape(batch, 1)
    header = json.dumps({"inputs": [
        {"name": "z", "datatype": "FP32", "shape": [batch, latent_dim], "parameters": {"binary_data_size": z.nbytes}},
        {"name": "labels", "datatype": "INT64", "shape": [batch, 1],
         "parameters": {"binary_data_size": labels.nbytes}}],
        "parameters": {"binary_data_output": True}}).encode()
    return header + z.tobytes() + labels.tobytes(), {HEADER_LENGTH: str(len(header))}


def request(connection: http.client.HTTPConnection, route: tuple, seed: int) -> int:
    kind, size, body, headers = route
    if kind == "png":
        connection.request("GET", f"/api/generate?n={size}&seed={seed}")
    else:
        connection.request("POST", f"/v2/models/{MODEL_NAME}/infer", body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def drive(url: str, route: tuple, clients: int, seconds: float) -> dict[int, list[float]]:
    """`clients` threads, each with its own keep-alive connection, back to back until the deadline:
    {status (0: connection error): latencies}."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    results, lock = {}, threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        seed = index * 1_000_000
        while time.perf_counter() < deadline:
            seed += 1
            start = time.perf_counter()
            try:
                status = request(connection, route, seed)
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            with lock:
                results.setdefault(status, []).append(time.perf_counter() - start)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def in_process(generator, route: tuple, seconds: float) -> float:
    """The route's work per second in this process, one call at a time, without HTTP."""
    from infer.files import encode_png
    from infer.images import render_grid

    kind, size, _, _ = route
    z = np.random.default_rng(size).standard_normal((size, generator.latent_dim), dtype=np.float32)
    labels = (np.arange(size) % 10).astype(np.int64)
    count, seed, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        seed += 1
        if kind == "png":
            encode_png(render_grid(generator.model, generator.plan(size), seed))
        else:
            generator.model.run(z, labels).tobytes()
        count += 1
    return count / (time.perf_counter() - start)


def p(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1] * 1e3 if len(latencies) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "infer" / "assets" / "generator.int8.onnx")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (keep-alive connections)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time per route")
    parser.add_argument("--quick", action="store_true", help="2 s per route (CI)")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds

    import mnist_gen

    generator = mnist_gen.load(args.model, provider="cpu")
    routes = [("png", 1, None, None), ("png", 64, None, None),
              ("v2", 1, *infer_body(1, generator.latent_dim)), ("v2", 64, *infer_body(64, generator.latent_dim))]
    server, url = start_server(args.model)
    errors = 0
    try:
        for route in routes:  # worker threads and onnxruntime's buffers for concurrent runs exist from here on
            drive(url, route, min(args.clients, 8), 0.5)
        rss_before = rss_mb(server.pid)
        print(f"mnist-gen serve at {url}, model {args.model.name}, {args.clients} clients, {seconds:g} s per route; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'route':<16} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'503s':>6} "
              f"{'503 p99 ms':>10}   {'in-process/s':>12} {'ratio':>6}")
        for route in routes:
            reference = in_process(generator, route, min(seconds, 5.0))
            start = time.perf_counter()
            results = drive(url, route, args.clients, seconds)
            elapsed = time.perf_counter() - start
            ok, busy = results.get(200, []), results.get(503, [])
            bad = sum(len(v) for status, v in results.items() if status not in (200, 503))
            errors += bad
            name = f"{'PNG n' if route[0] == 'png' else 'v2 batch'}={route[1]}"
            rate = len(ok) / elapsed
            print(f"{name:<16} {rate:>10.1f} {p(ok, 50):>8.1f} {p(ok, 99):>8.1f} {bad:>6} {len(busy):>6} "
                  f"{p(busy, 99):>10.1f}   {reference:>12.1f} {rate / reference:>5.2f}x")
        rss_after = rss_mb(server.pid)
        print(f"server RSS: {rss_before:.1f} MB before, {rss_after:.1f} MB after ({rss_after - rss_before:+.1f} MB)")
        print(f"errors: {errors}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
