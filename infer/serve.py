"""`mnist-gen serve`: a web page and an HTTP API over one loaded generator (FastAPI on uvicorn, no torch).

Every picture comes from infer/images.py, the renderer of `mnist-gen infer`, so a PNG from /api/generate
is byte for byte the file `mnist-gen infer --out` writes for the same model, seed and options.
The model is fixed at start-up: no request can name a file.
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

from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from . import __version__
from .errors import UserError
from .files import encode_gif, encode_png, upscale
from .images import MAX_PIXELS, draw, plan_grid, random_seed, render_grid, render_walk, walk_strip

WEB = Path(__file__).parent / "web"
# Per-request caps: a request costs at most about 256 images of work and a 8x-upscaled picture.
MAX_N = 256
MAX_SCALE = 8
MAX_STEPS = 32
MAX_SEED = 2**64 - 1  # every surface takes the seeds of infer/noise.py
# Renders at once (onnxruntime already uses every core for one) and requests allowed to wait for one.
RUNNING = 2
WAITING = 32


class Busy(Exception):
    """Every render slot and every place in the queue is taken."""


class Gate:
    """At most `running` renders at once and `waiting` more queued; past that a request is refused at once,
    so a flood of requests costs neither memory nor time."""

    def __init__(self, running: int = RUNNING, waiting: int = WAITING):
        self.running = asyncio.Semaphore(running)
        self.capacity = running + waiting
        self.admitted = 0

    @contextlib.asynccontextmanager
    async def slot(self):
        if self.admitted >= self.capacity:
            raise Busy
        self.admitted += 1
        try:
            async with self.running:
                yield
        finally:
            self.admitted -= 1


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """Every error is one line of JSON: {"error": "..."}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def create_app(generator, running: int = RUNNING, waiting: int = WAITING) -> FastAPI:
    # FastAPI's /docs and /redoc pages load their scripts from a CDN, which an offline page cannot;
    # the OpenAPI schema itself is served at /openapi.json.
    app = FastAPI(title="mnist-gen", version=__version__, docs_url=None, redoc_url=None,
                  description="Handwritten digits from a DCGAN generator, run by onnxruntime.")
    app.state.gate = gate = Gate(running, waiting)
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    async def off_loop(function, *args):
        """Run onnxruntime (and PNG encoding) in a worker thread, within the gate's bounds."""
        async with gate.slot():
            return await run_in_threadpool(function, *args)

    @app.exception_handler(Busy)
    async def busy(request, exc):
        return error(503, f"busy: {gate.capacity} requests are in progress or queued; retry shortly",
                     {"Retry-After": "1"})

    @app.exception_handler(UserError)
    async def bad_request(request, exc):
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_query(request, exc):
        first = exc.errors()[0]
        name = first["loc"][-1]
        return error(422, f"{name}={first.get('input')}: {first['msg']}")

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/api/info")
    async def info():
        """The model card: metadata, the provider that really runs, the version and the request caps."""
        return {
            "version": __version__,
            "model": generator.path.name,
            "provider": generator.provider,
            "provider_note": generator.note,
            "latent_dim": generator.latent_dim,
            "image_size": generator.image_size,
            "num_classes": generator.num_classes,
            "class_names": generator.class_names,
            "channels": generator.channels,
            "metadata": generator.metadata,
            "limits": {"n": MAX_N, "scale": MAX_SCALE, "steps": MAX_STEPS, "pixels": MAX_PIXELS},
        }

    @app.get("/api/generate", responses={200: {"content": {"image/png": {}}}})
    async def generate(
        digit: Annotated[int | None, Query(ge=0, description="digit for every image (default: 0-9 in turn)")] = None,
        n: Annotated[int, Query(ge=1, le=MAX_N, description="how many digits")] = 64,
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="noise seed (default: random)")] = None,
        scale: Annotated[int, Query(ge=1, le=MAX_SCALE, description="nearest-neighbour upscaling")] = 1,
        nrow: Annotated[int | None, Query(ge=1, le=MAX_N, description="images per grid row")] = None,
        format: Annotated[Literal["png", "json"], Query(description="a grid PNG, or each image in JSON")] = "png",
    ):
        """A grid of digits as a PNG (the bytes `mnist-gen infer --out` writes), or each image as base64 PNG.

        The seed used is in the X-Seed header (and in the JSON)."""
        seed = random_seed() if seed is None else seed
        grid = plan_grid(generator, n, None if digit is None else [digit], nrow, scale, name="digit")
        grid.check_size()
        if format == "png":
            png = await off_loop(lambda: encode_png(render_grid(generator, grid, seed)))
            return Response(png, media_type="image/png", headers={"X-Seed": str(seed)})

        def each_image():
            return [encode_png(upscale(image, scale)) for _, batch in draw(generator, grid, seed) for image in batch]

        images = await off_loop(each_image)
        labels = [None] * n if grid.labels is None else grid.labels.tolist()
        return {"seed": seed, "n": n, "images": [{"index": i, "digit": labels[i], "seed": seed, "png": b64(png)}
                                                 for i, png in enumerate(images)]}

    @app.get("/api/interpolate", responses={200: {"content": {"image/png": {}, "image/gif": {}}}})
    async def interpolate(
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="start noise (default: random)")] = None,
        to_seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="end on this seed's first digit")] = None,
        digit: Annotated[int | None, Query(ge=0, description="digit to walk through")] = None,
        to: Annotated[int | None, Query(ge=0, description="end on this digit (cross-fades along the walk)")] = None,
        steps: Annotated[int, Query(ge=2, le=MAX_STEPS, description="frames in the walk")] = 10,
        scale: Annotated[int, Query(ge=1, le=MAX_SCALE, description="nearest-neighbour upscaling")] = 2,
        format: Annotated[Literal["png", "gif", "json"], Query(description="strip, animation or frames")] = "png",
    ):
        """A latent walk between two seeds and/or two digits: a PNG strip, a GIF, or each frame in JSON."""
        seed = random_seed() if seed is None else seed
        frames = await off_loop(render_walk, generator, seed, steps, digit, to, to_seed, scale, "digit")
        headers = {"X-Seed": str(seed)}
        if format == "json":
            pngs = await off_loop(lambda: [b64(encode_png(frame)) for frame in frames])
            return JSONResponse({"seed": seed, "to_seed": to_seed, "frames": pngs}, headers=headers)
        if format == "gif":
            gif = await off_loop(encode_gif, frames + frames[-2:0:-1], 120)  # there and back again
            return Response(gif, media_type="image/gif", headers=headers)
        png = await off_loop(lambda: encode_png(walk_strip(frames, scale)))
        return Response(png, media_type="image/png", headers=headers)

    return app


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
                                           timeout_graceful_shutdown=5))

    def stop(signum, frame):
        raise KeyboardInterrupt

    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the previous handler:
    # make SIGTERM end like Ctrl-C, so both finish here without a traceback.
    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    print("stopped", file=sys.stderr)
