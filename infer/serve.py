"""`mnist-gen serve`: a web page and an HTTP API over one loaded generator (FastAPI on uvicorn, no torch).

Every picture comes from infer/images.py, the renderer of `mnist-gen infer`, so a PNG from /api/generate
is byte for byte the file `mnist-gen infer --out` writes for the same model, seed and options.
The model is fixed at start-up: no request can name a file. Beside the page's routes: the Open Inference
Protocol (/v2/..., oip.py), as Triton serves the exported repository, and Prometheus metrics (/metrics, metrics.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from . import __version__, oip
from .api import Generator, parse_digits
from .errors import BadValue, UserError
from .files import encode_gif, encode_png, upscale
from .generator import model_card
from .images import MAX_IMAGES, MAX_SCALE, MAX_STEPS, REQUEST_LIMITS, random_seed, render_grid, walk_strip
from .metrics import Metrics, Observe
from .noise import MAX_SEED, MAX_START

WEB = Path(__file__).parent / "web"
MAX_N = MAX_IMAGES  # per-request caps: infer/images.py
MAX_BODY = 8 * 2**20  # bytes of a v2 infer request: 256 z vectors as JSON text take about 2.5 MB
CONV_SEARCH = oip.SERVER_CONV_SEARCH
SHUTDOWN_GRACE = 10  # seconds in-flight requests get after SIGTERM: a 256-image render takes well under one
# Renders at once (onnxruntime already uses every core for one) and requests allowed to wait for one.
RUNNING = 2
WAITING = 32
GENERATE_PARAMS = {"digit", "n", "seed", "start", "scale", "nrow", "format"}
INTERPOLATE_PARAMS = {"seed", "to_seed", "digit", "to", "steps", "scale", "format"}


class Busy(Exception):
    """Every render slot and every place in the queue is taken."""


class Gate:
    """At most `running` renders at once and `waiting` more queued; past that a request is refused at once,
    so a flood of requests costs neither memory nor time."""

    def __init__(self, running: int = RUNNING, waiting: int = WAITING):
        self.running = asyncio.Semaphore(running)
        self.capacity = running + waiting
        self.admitted = 0
        self.in_flight = 0

    @property
    def waiting(self) -> int:
        return self.admitted - self.in_flight

    @contextlib.asynccontextmanager
    async def slot(self):
        if self.admitted >= self.capacity:
            raise Busy
        self.admitted += 1
        try:
            async with self.running:
                self.in_flight += 1
                try:
                    yield
                finally:
                    self.in_flight -= 1
        finally:
            self.admitted -= 1


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """Every error is one line of JSON: {"error": "..."} (the Open Inference Protocol's error body too)."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def reject_unknown(request: Request, known: set[str]) -> None:
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise BadValue(f"unknown parameter {unknown[0]}; this route takes {', '.join(sorted(known))}")


def reproduce(seed: int, index: int, label: int | None) -> dict:
    """What draws image `index` of `seed` alone, on each surface."""
    digit = "" if label is None else f"&digit={label}"
    cli_digit = "" if label is None else f" --digit {label}"
    return {"api": f"/api/generate?seed={seed}&start={index}&n=1{digit}",
            "cli": f"mnist-gen infer --seed {seed} --start {index} --n 1{cli_digit}"}


def each_image(generator: Generator, grid, seed: int) -> list[dict]:
    """format=json: each image of the grid as base64 PNG with its digit and what draws it alone."""
    labels = [None] * grid.n if grid.labels is None else grid.labels.tolist()
    pngs = [encode_png(upscale(image, grid.scale)) for _, batch in
            generator.batches(grid.n, None if grid.labels is None else labels, seed, grid.start) for image in batch]
    return [{"index": grid.start + i, "digit": labels[i], "seed": seed, "png": b64(png),
             "reproduce": reproduce(seed, grid.start + i, labels[i])} for i, png in enumerate(pngs)]


def create_app(generator: Generator, running: int = RUNNING, waiting: int = WAITING) -> FastAPI:
    """The app over one loaded generator (mnist_gen.load): the page, /api/..., /v2/... and /metrics."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        warm_up = asyncio.create_task(warm())
        yield
        warm_up.cancel()

    # FastAPI's /docs and /redoc pages load their scripts from a CDN, which an offline page cannot;
    # the OpenAPI schema itself is served at /openapi.json.
    app = FastAPI(title="mnist-gen", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Handwritten digits from a DCGAN generator, run by onnxruntime.")
    app.state.gate = gate = Gate(running, waiting)
    app.state.ready = False
    metrics = Metrics(gate, lambda: app.state.ready)
    app.add_middleware(Observe, metrics=metrics)
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    model = generator.model

    async def off_loop(function, *args):
        """Run onnxruntime (and PNG encoding) in a worker thread, within the gate's bounds."""
        async with gate.slot():
            return await run_in_threadpool(function, *args)

    async def warm():
        """Ready only once one image has been drawn and encoded end to end, as a request would be."""
        await off_loop(lambda: encode_png(render_grid(model, generator.plan(1), 0)))
        app.state.ready = True

    @app.exception_handler(Busy)
    async def busy(request, exc):
        metrics.rejected.inc()
        return error(503, f"busy: {gate.capacity} requests are in progress or queued; retry shortly",
                     {"Retry-After": "1"})

    @app.exception_handler(UserError)
    async def bad_request(request, exc):
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_query(request, exc):
        first = exc.errors()[0]
        name = first["loc"][-1]
        return error(400, f"{name}={first.get('input')}: {first['msg']}")

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    add_page_routes(app, generator, metrics)
    add_generate_routes(app, generator, off_loop)
    add_v2_routes(app, generator, off_loop)
    return app


def add_page_routes(app: FastAPI, generator: Generator, metrics: Metrics) -> None:
    """The page, its model card, liveness and the metrics."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html")

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers (readiness, model warm, is /v2/health/ready)."""
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/api/info")
    async def info():
        """The model card: metadata, the provider that really runs, the version and the request caps."""
        return {**model_card(generator.model), "provider": generator.provider, "provider_note": generator.model.note,
                "limits": {**REQUEST_LIMITS, "seed": MAX_SEED, "start": MAX_START}}


def add_generate_routes(app: FastAPI, generator: Generator, off_loop) -> None:
    """/api/generate and /api/interpolate: the page's routes, the same pictures as `mnist-gen infer/interpolate`."""

    @app.get("/api/generate", responses={200: {"content": {"image/png": {}}}})
    async def generate(
        request: Request,
        digit: Annotated[str | None, Query(description="a digit (or class name) for every image, or a list such "
                                           "as 0,1,2 cycled over them (default: every class in turn)")] = None,
        n: Annotated[int, Query(ge=1, le=MAX_N, description="how many digits")] = 64,
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="noise seed (default: random)")] = None,
        start: Annotated[int, Query(ge=0, le=MAX_START - MAX_N + 1,  # each image's redraw link stays in range
                                    description="first image index of the seed")] = 0,
        scale: Annotated[int, Query(ge=1, le=MAX_SCALE, description="nearest-neighbour upscaling")] = 1,
        nrow: Annotated[int | None, Query(ge=1, le=MAX_N, description="images per grid row")] = None,
        format: Annotated[Literal["png", "json"], Query(description="a grid PNG, or each image in JSON")] = "png",
    ):
        """A grid of digits as a PNG (the bytes `mnist-gen infer --out` writes), or each image as base64 PNG with
        what draws it alone (seed and index). The seed used is in the X-Seed header (and in the JSON)."""
        reject_unknown(request, GENERATE_PARAMS)
        seed = random_seed() if seed is None else seed
        grid = generator.plan(n, parse_digits(digit, "digit"), nrow, scale, start, name="digit")
        grid.check_size()
        if format == "png":
            png = await off_loop(lambda: encode_png(render_grid(generator.model, grid, seed)))
            return Response(png, media_type="image/png", headers={"X-Seed": str(seed)})

        images = await off_loop(each_image, generator, grid, seed)
        return JSONResponse({"seed": seed, "start": start, "n": n, "images": images}, headers={"X-Seed": str(seed)})

    @app.get("/api/interpolate", responses={200: {"content": {"image/png": {}, "image/gif": {}}}})
    async def interpolate(
        request: Request,
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="start noise (default: random)")] = None,
        to_seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="end on this seed's first digit")] = None,
        digit: Annotated[int | None, Query(ge=0, description="digit to walk through")] = None,
        to: Annotated[int | None, Query(ge=0, description="end on this digit (cross-fades; needs digit)")] = None,
        steps: Annotated[int, Query(ge=2, le=MAX_STEPS, description="frames in the walk")] = 10,
        scale: Annotated[int, Query(ge=1, le=MAX_SCALE, description="nearest-neighbour upscaling")] = 2,
        format: Annotated[Literal["png", "gif", "json"], Query(description="strip, animation or frames")] = "png",
    ):
        """A latent walk between two seeds and/or two digits: a PNG strip, a GIF, or each frame in JSON."""
        reject_unknown(request, INTERPOLATE_PARAMS)
        seed = random_seed() if seed is None else seed
        pictures = await off_loop(generator.walk, seed, steps, digit, to, to_seed, scale)
        frames = [np.asarray(picture) for picture in pictures]
        headers = {"X-Seed": str(seed)}
        if format == "json":
            pngs = await off_loop(lambda: [b64(encode_png(frame)) for frame in frames])
            return JSONResponse({"seed": seed, "to_seed": to_seed, "frames": pngs}, headers=headers)
        if format == "gif":
            gif = await off_loop(encode_gif, frames + frames[-2:0:-1], 120)  # there and back again
            return Response(gif, media_type="image/gif", headers=headers)
        png = await off_loop(lambda: encode_png(walk_strip(frames, scale)))
        return Response(png, media_type="image/png", headers=headers)


def add_v2_routes(app: FastAPI, generator: Generator, off_loop) -> None:
    """The Open Inference Protocol's HTTP routes (oip.py), as Triton serves the exported repository."""
    model = generator.model

    def known(name: str, version: str | None = None) -> None:
        if name != oip.MODEL_NAME or version not in (None, oip.MODEL_VERSION):
            raise HTTPException(404, f"unknown model {name!r} version {version!r}; this server has "
                                f"{oip.MODEL_NAME!r} version {oip.MODEL_VERSION!r}")

    @app.get("/v2")
    async def v2_server():
        return oip.server_metadata()

    @app.get("/v2/health/live")
    async def v2_live():
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def v2_ready():
        return Response(status_code=200 if app.state.ready else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_model(name: str, version: str | None = None):
        known(name, version)
        return oip.model_metadata(generator)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, version: str | None = None):
        known(name, version)
        return Response(status_code=200 if app.state.ready else 503)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(request: Request, name: str, version: str | None = None):
        """z (FP32 [batch, latent]) and labels (INT64 [batch, 1]) in, images (FP32 [batch, C, H, W]) out."""
        known(name, version)
        body = await read_body(request, MAX_BODY)
        header, inputs = oip.decode_request(body, request.headers.get(oip.HEADER_LENGTH), generator)
        oip.check_outputs(header)
        labels = inputs["labels"].reshape(-1) if "labels" in inputs else None
        images = await off_loop(model.run, inputs["z"], labels)
        content, headers = oip.encode_response(header, images)
        return Response(content, media_type="application/octet-stream" if headers else "application/json",
                        headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes: a huge upload is never held."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request body is {declared} bytes, over the cap of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the request body is over the cap of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def listen(host: str, port: int) -> socket.socket:
    """Bind the port ourselves, so that a port in use is one clear error and --port 0 can pick a free port."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # from here on connections wait in the backlog until uvicorn accepts them
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: {host}:{port} is already in use; pick another port "
                            "(--port 0 takes any free one)") from None
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(generator, sock: socket.socket) -> None:
    """Serve on a bound socket until Ctrl-C or SIGTERM, then return (the caller exits 0)."""
    import uvicorn

    host = sock.getsockname()[0]
    if host in ("0.0.0.0", "::"):
        print(f"note: --host {host}: the page and API are reachable from the network, not only this machine",
              file=sys.stderr)
    print(f"serving {url_of(sock)} (Ctrl-C to stop)", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(generator), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE))

    def stop(signum, frame):
        raise KeyboardInterrupt

    # uvicorn shuts down gracefully on SIGINT/SIGTERM (stops accepting, lets in-flight requests finish for up to
    # SHUTDOWN_GRACE seconds), then raises the signal again for the previous handler: both end here, exit 0.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    print("stopped", file=sys.stderr)
