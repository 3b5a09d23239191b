"""Load test of `mnist-gen serve` on loopback, beside the same renders called in-process.

Starts the server on a free 127.0.0.1 port, drives it with a bounded number of concurrent keep-alive
clients for a bounded time per request size (n=1 and n=64 digits), and prints requests/s, p50 and p99
latency, the error count (must be 0) and the server's RSS before and after ("before" follows a one-second
warm-up of each size with the same clients). The reference is the renderer itself in this process, one
call at a time (plan_grid, render_grid, encode_png: what one /api/generate does without HTTP); the ratio
is what the server keeps of it.

    python benchmarks/serve_load.py [--model FILE.onnx] [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "infer", "serve", "--model", str(model), "--host", "127.0.0.1",
                               "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready, _, _ = select.select([server.stdout], [], [], 60)
    line = server.stdout.readline() if ready else ""
    if not line.startswith("serving http://127.0.0.1:"):
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, line.split()[1]


def get(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status


def load(url: str, n: int, clients: int, seconds: float) -> tuple[list[float], int]:
    """`clients` threads, each with its own keep-alive connection, request back to back until the deadline."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        seed = index * 1_000_000
        while time.perf_counter() < deadline:
            seed += 1
            start = time.perf_counter()
            try:
                status = get(connection, f"/api/generate?n={n}&seed={seed}")
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += status != 200
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def in_process(model: Path, n: int, seconds: float) -> float:
    """Renders per second of the renderer itself, one at a time, in this process."""
    from infer.files import encode_png
    from infer.generator import OnnxGenerator
    from infer.images import plan_grid, render_grid

    generator = OnnxGenerator.load(model, "cpu")
    count, seed, deadline = 0, 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        seed += 1
        encode_png(render_grid(generator, plan_grid(generator, n), seed))
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "infer" / "assets" / "generator.onnx")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (keep-alive connections)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per request size")
    args = parser.parse_args()

    server, url = start_server(args.model)
    try:
        with contextlib.closing(http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port)) as warm:
            assert get(warm, "/api/generate?n=1&seed=0") == 200 and get(warm, "/api/generate?n=64&seed=0") == 200
        for n in (1, 64):  # worker threads and onnxruntime's buffers for concurrent runs exist from here on
            load(url, n, args.clients, 1.0)
        rss_before = rss_mb(server.pid)
        print(f"mnist-gen serve at {url}, model {args.model.name}, {args.clients} clients, "
              f"{args.seconds:g} s per size; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'n':>3} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}   "
              f"{'in-process/s':>12} {'ratio':>6}")
        total_errors = 0
        for n in (1, 64):
            reference = in_process(args.model, n, args.seconds)
            start = time.perf_counter()
            latencies, errors = load(url, n, args.clients, args.seconds)
            rate = len(latencies) / (time.perf_counter() - start)
            quantiles = statistics.quantiles(latencies, n=100)
            total_errors += errors
            print(f"{n:>3} {rate:>11.1f} {quantiles[49] * 1e3:>8.1f} {quantiles[98] * 1e3:>8.1f} {errors:>7}   "
                  f"{reference:>12.1f} {rate / reference:>5.2f}x")
        rss_after = rss_mb(server.pid)
        print(f"server RSS: {rss_before:.1f} MB before, {rss_after:.1f} MB after ({rss_after - rss_before:+.1f} MB)")
        print(f"errors: {total_errors}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    if total_errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
