"""`mnist-gen`: generate MNIST digits from an ONNX generator with onnxruntime, no torch needed.

Heavy imports (numpy, onnxruntime, Pillow) happen inside the commands so `--help` is instant.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import BadFile, BadValue, UserError
from .protocol import SCORE_BATCH, SCORE_IMAGES, SCORE_SEED

GRID_CAP = 10_000  # images in one grid picture; more go to --out-dir only
SCORE_CAP = 100_000  # images scored at once: their features are held in memory (about 1 KB each)

app = typer.Typer(
    name="mnist-gen",
    help="Generate MNIST digits from an exported DCGAN generator (ONNX, onnxruntime CUDA or CPU).\n\n"
    "Examples:\n\n  mnist-gen infer --n 64 --out grid.png\n\n  mnist-gen infer --digit 7 --n 16 --seed 1 --scale 4\n\n"
    "  mnist-gen interpolate --digit 3 --to 8 --out walk.gif\n\n  mnist-gen info",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="ONNX generator, or fp32 / int8: the bundled one of that precision "
                 "(default: ./artifacts/generator.onnx, else the bundled int8 on CPU, fp32 on CUDA)"),
]
ProviderOpt = Annotated[str, typer.Option("--provider", help="auto (CUDA if usable, else CPU), cpu or cuda")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", help="noise seed, 0..2^64-1 (default: drawn at random and printed)")]
ScaleOpt = Annotated[int, typer.Option(
    "--scale", help="nearest-neighbour upscaling factor for viewing (a picture is capped at 8192x8192 pixels)")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print only results and errors (no model/seed notes)")]

_settings = {"quiet": False}


def note(message: str) -> None:
    if not _settings["quiet"]:
        print(message, file=sys.stderr)


def fail(error: UserError) -> typer.Exit:
    print(f"error: {error}", file=sys.stderr)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        print(f"mnist-gen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Generate MNIST digits from an exported DCGAN generator, without PyTorch."""


class Stopped(BaseException):
    """Ctrl-C or SIGTERM, raised where the program is, so a file being written is removed on the way out.
    (A BaseException: Typer would turn a KeyboardInterrupt into a silent exit 130.)"""


def _stop(signum, frame):
    raise Stopped(signum)


def run() -> None:
    """The `mnist-gen` entry point: every usage error is one `error:` line (exit 2); Ctrl-C exits 130 and
    SIGTERM 143, each with one line; a file being written is removed, never left half-written."""
    try:  # Typer vendors click since 0.22; older releases use click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:
        from click.exceptions import ClickException, NoArgsIsHelpError

    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) != signal.SIG_IGN:  # a parent that ignores Ctrl-C (nohup, &) keeps it ignored
            signal.signal(number, _stop)
    try:
        code = app(prog_name="mnist-gen", standalone_mode=False)
    except NoArgsIsHelpError as e:
        e.show()
        code = 0
    except ClickException as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        code = 2
    except Stopped as e:
        how = "interrupted" if e.args[0] == signal.SIGINT else "terminated"
        print(f"{how}: files already written are complete; none is half-written", file=sys.stderr)
        code = 128 + e.args[0]
    sys.exit(code if isinstance(code, int) else 0)


def load(model: Path | None, provider: str, conv_search: str = "EXHAUSTIVE"):
    """The CLI's one batch shape (--batch-size, then one remainder) runs many times: cuDNN's exhaustive search
    for the fastest convolution algorithm pays for itself there (serve, with every batch size, chooses otherwise)."""
    from .api import load as load_api

    generator = load_api(model, provider, conv_search=conv_search)
    if generator.model.note and provider == "auto":
        note(f"note: CUDA not used ({generator.model.note}); running on CPU")
    kind = f"conditional, {generator.num_classes} classes" if generator.num_classes else "unconditional"
    colour = ", RGB" if generator.channels == 3 else ""
    note(f"model: {generator.path} ({generator.image_size}x{generator.image_size}{colour}, {kind}); "
         f"provider: {generator.provider}")
    return generator


def pick_seed(seed: int | None, name: str = "--seed") -> int:
    from .api import check_seed
    from .images import random_seed

    if seed is None:
        seed = random_seed()
        note(f"seed: {seed} (pass {name} {seed} to reproduce)")
    return check_seed(seed, name)


def check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise BadValue(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_writable(path: Path, what: str) -> None:
    """Fail before any work if `path` cannot be written: a file is really created (and removed) beside it,
    which is the only test that holds for /proc, read-only mounts and full quotas. Parent folders are created."""
    import os
    import tempfile

    if path.is_dir():
        raise BadFile(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadFile(f"{what} {path}: cannot create {parent} ({e.strerror or e})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadFile(f"{what} {path}: cannot write in {parent} ({e.strerror or e})") from None


@app.command()
def infer(
    n: Annotated[int, typer.Option("--n", help="how many digits to generate")] = 64,
    out: Annotated[Path | None, typer.Option(
        "--out", help="grid picture to write: .png (default grid.png), .webp (lossless) or .jpg")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="also write each digit as its own PNG here")] = None,
    model: ModelOpt = None,
    digit: Annotated[
        str | None, typer.Option("--digit", help="digit for all images, or a list such as 0,1,2 (conditional models)")
    ] = None,
    class_: Annotated[
        str | None, typer.Option("--class", help="class by name, or a list such as cat,dog (models trained on named "
                                 "classes; see mnist-gen info)")
    ] = None,
    seed: SeedOpt = None,
    start: Annotated[int, typer.Option(
        "--start", help="first image index of the seed: --start 5 --n 1 draws image 5 of a grid alone")] = 0,
    nrow: Annotated[
        int | None, typer.Option("--nrow", help="images per grid row (default: 10 when cycling 0-9)")
    ] = None,
    scale: ScaleOpt = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per onnxruntime call")] = 256,
    provider: ProviderOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Generate N digits into a grid picture (and/or one PNG per digit).

    Without --digit a conditional model cycles 0-9, so each grid row reads 0123456789.

    Examples: mnist-gen infer --n 64 --out grid.png; mnist-gen infer --digit 0,1 --n 1000 --out-dir digits/
    """
    _settings["quiet"] = quiet
    try:
        _infer(n, out, out_dir, model, digit, class_, seed, start, nrow, scale, batch_size, provider)
    except UserError as e:
        raise fail(e) from None


def _check_outputs(n: int, out: Path | None, out_dir: Path | None) -> None:
    from .files import image_format

    if out is not None:
        if n > GRID_CAP:
            raise BadValue(f"--n {n}: a grid holds at most {GRID_CAP} images; use --out-dir alone for more")
        image_format(out)
        check_writable(out, "--out")
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise BadFile(f"--out-dir {out_dir} is a file")
        check_writable(out_dir / "x.png", "--out-dir")


def _infer(n, out, out_dir, model, digit, class_, seed, start, nrow, scale, batch_size, provider) -> None:
    import numpy as np

    from .api import parse_digits
    from .files import remove_stale_temporaries, save_image, save_png, upscale
    from .images import assemble

    check_positive(n=n, nrow=nrow, scale=scale, batch_size=batch_size)
    if digit is not None and class_ is not None:
        raise BadValue("give --digit or --class, not both")
    name = "--class" if class_ is not None else "--digit"
    digits = parse_digits(class_ if class_ is not None else digit, name)
    if class_ is not None:
        digits = [str(d) for d in digits]  # --class names a class even when it is spelled like a number
    if out is None and out_dir is None:
        out = Path("grid.png")
    _check_outputs(n, out, out_dir)
    if start < 0:
        raise BadValue(f"--start must be >= 0, got {start}")
    seed = pick_seed(seed)
    generator = load(model, provider)
    grid = generator.plan(n, digits, nrow, scale, start, name)
    grid.check_size(whole_grid=out is not None)
    if out_dir is not None:
        remove_stale_temporaries(out_dir)  # what a killed earlier run (SIGKILL, power loss) left
    tiles = None
    for first, images in generator.batches(n, digits, seed, start, batch_size):
        if out is not None:
            if tiles is None:  # [n, H, W] grey or [n, H, W, 3] colour, as the model draws them
                tiles = np.empty((n, *images.shape[1:]), np.uint8)
            tiles[first - start : first - start + len(images)] = images
        if out_dir is not None:
            for i, image in enumerate(images, first):
                label = grid.labels[i - start] if grid.labels is not None else None
                file = f"{i:06d}_digit{label}.png" if label is not None else f"{i:06d}.png"
                save_png(out_dir / file, upscale(image, scale))
    if out is not None:
        save_image(out, assemble(grid, tiles))
        print(f"wrote {out} ({n} digits, {grid.nrow} per row)")
    if out_dir is not None:
        print(f"wrote {n} PNGs to {out_dir}")


@app.command()
def interpolate(
    digit: Annotated[int | None, typer.Option("--digit", help="digit to walk through (conditional models)")] = None,
    to: Annotated[
        int | None, typer.Option("--to", help="end on this digit instead (cross-fades along the walk; needs --digit)")
    ] = None,
    to_seed: Annotated[int | None, typer.Option(
        "--to-seed", help="end on image 0 of this seed (default: walk from image 0 to image 1 of --seed)")] = None,
    steps: Annotated[int, typer.Option("--steps", help="frames in the walk")] = 10,
    out: Annotated[Path, typer.Option(
        "--out", help="an animated .gif, or a strip: .png, .webp or .jpg")] = Path("interpolation.png"),
    model: ModelOpt = None,
    seed: SeedOpt = None,
    scale: ScaleOpt = 2,
    provider: ProviderOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """A smooth latent walk (slerp between two noise vectors), as a picture strip or an animated GIF.

    Examples: mnist-gen interpolate --digit 3 --out walk.png; mnist-gen interpolate --digit 1 --to 7 --out morph.gif
    """
    _settings["quiet"] = quiet
    try:
        _interpolate(digit, to, to_seed, steps, out, model, seed, scale, provider)
    except UserError as e:
        raise fail(e) from None


def _interpolate(digit, to, to_seed, steps, out, model, seed, scale, provider) -> None:
    import numpy as np

    from .api import check_seed
    from .files import image_format, save_gif, save_image

    check_positive(steps=steps, scale=scale)
    if steps < 2:
        raise BadValue("--steps must be >= 2")
    if to is not None and digit is None:
        raise BadValue("--to needs --digit too: the digit the walk starts from")
    if out.suffix.lower() != ".gif":
        image_format(out)
    check_writable(out, "--out")
    if to_seed is not None:
        check_seed(to_seed, "--to-seed")
    seed = pick_seed(seed)
    generator = load(model, provider)
    for value, name in ((digit, "--digit"), (to, "--to")):
        if value is not None:
            generator.labels(value, name)  # the same check as the walk's, in the command line's words
    if out.suffix.lower() == ".gif":
        frames = [np.asarray(frame) for frame in generator.walk(seed, steps, digit, to, to_seed, scale)]
        save_gif(out, frames + frames[-2:0:-1], duration_ms=120)  # there and back again
    else:
        save_image(out, np.asarray(generator.walk(seed, steps, digit, to, to_seed, scale, strip=True)))
    print(f"wrote {out} ({steps} steps)")


@app.command()
def info(model: ModelOpt = None, provider: ProviderOpt = "auto", quiet: QuietOpt = False) -> None:
    """The model's metadata, size, inputs and outputs, and which onnxruntime provider really runs it."""
    _settings["quiet"] = quiet
    try:
        import onnxruntime as ort

        generator = load(model, provider).model
    except UserError as e:
        raise fail(e) from None
    print(f"model:      {generator.path} ({generator.path.stat().st_size / 1e6:.2f} MB)")
    print(f"precision:  {generator.metadata.get('precision', 'fp32')}")
    for node in generator.session.get_inputs():
        print(f"input:      {node.name} {node.type} {node.shape}")
    for node in generator.session.get_outputs():
        print(f"output:     {node.name} {node.type} {node.shape}")
    for key in sorted(generator.metadata):
        print(f"meta:       {key} = {generator.metadata[key]}")
    if generator.conditional:
        print(f"classes:    {', '.join(f'{i}={name}' for i, name in enumerate(generator.class_names))}")
    print(f"onnxruntime {ort.__version__}; providers offered: {', '.join(ort.get_available_providers())}")
    print(f"running on: {generator.provider}" + (f" (CUDA not used: {generator.note})" if generator.note else ""))


@app.command()
def bench(
    model: ModelOpt = None,
    provider: ProviderOpt = "auto",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="comma-separated batch sizes")] = "1,64,256",
    seconds: Annotated[float, typer.Option("--seconds", help="time to spend on each batch size")] = 1.0,
    compare: Annotated[
        Path | None, typer.Option("--compare", help="a second model (file, or fp32 / int8) measured side by side")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Images/s and latency per batch size on the chosen provider, optionally against a second model.

    Example: mnist-gen bench --model fp32 --compare int8
    """
    _settings["quiet"] = quiet
    try:
        _bench(model, provider, batch_sizes, seconds, compare)
    except UserError as e:
        raise fail(e) from None


def _bench(model, provider, batch_sizes, seconds, compare=None) -> None:

    import numpy as np

    try:
        sizes = [int(b) for b in batch_sizes.split(",")]
    except ValueError:
        raise BadValue(f"--batch-sizes {batch_sizes!r}: give integers such as 1,64,256") from None
    if min(sizes) < 1:
        raise BadValue(f"--batch-sizes must each be >= 1, got {min(sizes)}")
    if not seconds > 0:
        raise BadValue(f"--seconds must be > 0, got {seconds}")
    generators = [load(model, provider).model] + ([load(compare, provider).model] if compare is not None else [])
    if len({(g.latent_dim, g.num_classes) for g in generators}) > 1:
        raise BadValue("--compare: the two models take different inputs (latent size or classes)")
    header = f"{'batch':>6}" + "".join(f" {'median ms':>10} {'images/s':>10}" for _ in generators)
    ratio = f" {'2nd/1st':>8}" if len(generators) == 2 else ""
    print(header + ratio + "  (" + " | ".join(f"{g.path.name}, {g.provider}" for g in generators) + ")")
    for batch in sizes:
        rng = np.random.default_rng(0)
        z = rng.standard_normal((batch, generators[0].latent_dim), dtype=np.float32)
        labels = np.arange(batch, dtype=np.int64) % max(generators[0].num_classes, 1)
        medians = [_median_run_time(g, z, labels, seconds) for g in generators]
        row = f"{batch:>6}" + "".join(f" {m * 1e3:>10.2f} {batch / m:>10.0f}" for m in medians)
        print(row + (f" {medians[0] / medians[1]:>7.2f}x" if len(medians) == 2 else ""))


def _median_run_time(generator, z, labels, seconds: float) -> float:
    import time

    import numpy as np

    generator.run(z, labels)  # warm-up
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        t0 = time.perf_counter()
        generator.run(z, labels)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@app.command()
def score(
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", help="images to generate and score")] = SCORE_IMAGES,
    seed: Annotated[int, typer.Option("--seed", help="noise seed (fixed, so scores are comparable)")] = SCORE_SEED,
    as_json: Annotated[bool, typer.Option("--json", help="print the scores as one JSON object")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per onnxruntime call")] = SCORE_BATCH,
    provider: ProviderOpt = "auto",
    scorer: Annotated[
        Path | None, typer.Option("--scorer", help="a scorer for other data (python -m trainer.classifier --out DIR); "
                                  "default: the bundled MNIST one")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """FID, Inception Score, class shares, diversity and conditional accuracy, next to real data's own.

    Scored with the project's MNIST classifier (bundled), or --scorer DIR for other data; images of another
    size are resized to the classifier's. Conditional models are asked for each class in turn.
    Example: mnist-gen score --n 10000 --json
    """
    _settings["quiet"] = quiet
    try:
        _score(model, n, seed, as_json, batch_size, provider, scorer)
    except UserError as e:
        raise fail(e) from None


def _score(model, n, seed, as_json, batch_size, provider, scorer) -> None:
    import json

    import numpy as np

    from .score import check_scorer_fits, load_scorer, score_generator

    check_positive(n=n, batch_size=batch_size)
    if n > SCORE_CAP:
        raise BadValue(f"--n {n}: scores are computed from at most {SCORE_CAP:,} images (the features of every "
                       "image are held in memory)")
    from .api import check_seed

    check_seed(seed, "--seed")
    classifier, stats = load_scorer(scorer)
    generator = load(model, provider).model
    check_scorer_fits(classifier, generator.channels, generator.num_classes if generator.conditional else 0)
    result = score_generator(generator.run, generator.latent_dim, generator.num_classes, stats, classifier,
                             n, seed, batch_size)
    floor = {k.removeprefix("floor_"): stats[k] for k in stats if k.startswith("floor_")}
    if as_json:
        report = {"model": str(generator.path), "n": n, "seed": seed,
                  **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()},
                  "real_floor": {k: (v.tolist() if v.ndim else float(v)) for k, v in floor.items()}}
        print(json.dumps(report))
        return
    data = str(stats["dataset"]) if "dataset" in stats else "mnist"
    real = "real MNIST" if data == "mnist" else f"real {data}"
    print(f"{'':<22}{'generator':>12}{real:>14}")
    names = [("FID (lower is better)", "fid", ".3f"), ("Inception Score", "inception_score", ".3f"),
             ("diversity (real = 1)", "diversity", ".3f"), ("conditional accuracy", "conditional_accuracy", ".2%")]
    for title, key, fmt in names:
        if key in result:
            floor_value = format(float(floor[key]), fmt) if key in floor else "-"
            print(f"{title:<22}{format(result[key], fmt):>12}{floor_value:>14}")
    shares = " ".join(f"{d}:{s:.1%}" for d, s in enumerate(result["digit_share"]))
    print(f"{'digit' if data == 'mnist' else 'class'} shares: {shares}")
    print(f"({n} generated images, seed {seed}; real: up to 10,000 {data} training images drawn at random, "
          "classes in turn, against its test images)")


@app.command()
def site(
    out: Annotated[Path, typer.Option("--out", help="folder to create (new, or empty) for the static site")],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="ONNX generator, or fp32 / int8: the bundled one of that precision "
                     "(default: ./artifacts/generator.onnx, else the bundled int8: a quarter of fp32's size, faster "
                     "in a browser)"),
    ] = None,
    onnxruntime_web: Annotated[
        Path | None, typer.Option("--onnxruntime-web", help="onnxruntime-web's npm tarball, for machines without "
                                  "the npm registry (default: downloaded once, hash-checked, cached)")
    ] = None,
) -> None:
    """A static folder with the page of `mnist-gen serve`, where the visitor's browser draws the digits.

    Any static file server shows it, with no mnist-gen process: onnxruntime-web (WebAssembly) runs the model.

    Example: mnist-gen site --out site/ && python -m http.server -d site/ -b 127.0.0.1
    """
    try:
        from .site import build_site

        generator = build_site(out, model, onnxruntime_web)
    except UserError as e:
        raise fail(e) from None
    print(f"wrote {out}/ (model {generator.path.name}); serve it with any static file server, e.g. "
          f"python -m http.server -d {out} -b 127.0.0.1")


@app.command()
def serve(
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on; 0.0.0.0 makes the page reachable from the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port, printed)")] = 8000,
    provider: ProviderOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """A web page and HTTP API for the generator, until Ctrl-C (needs pip install "mnist-gen\\[serve]").

    The page draws grids and latent walks; the API is /api/generate, /api/interpolate, /api/info, /healthz
    (schema at /openapi.json), the Open Inference Protocol at /v2 (Triton's clients work) and /metrics.
    Example: mnist-gen serve --port 8000, then open http://127.0.0.1:8000/
    """
    _settings["quiet"] = quiet
    try:
        _serve(model, host, port, provider)
    except UserError as e:
        raise fail(e) from None


def _serve(model, host, port, provider) -> None:
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(name) is None]
    if missing:
        raise BadValue(f"mnist-gen serve needs {', '.join(missing)}, which the base install leaves out: "
                       "pip install \"mnist-gen[serve]\" (from a clone: pip install \".[serve]\")")
    from .serve import CONV_SEARCH, listen
    from .serve import serve as run_server

    sock = listen(host, port)  # a port in use fails before the model loads
    run_server(load(model, provider, CONV_SEARCH), sock)
