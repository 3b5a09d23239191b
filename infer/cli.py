"""`mnist-gen`: generate MNIST digits from an ONNX generator with onnxruntime, no torch needed.

Heavy imports (numpy, onnxruntime, Pillow) happen inside the commands so `--help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import UserError
from .protocol import SCORE_BATCH, SCORE_IMAGES, SCORE_SEED

GRID_CAP = 10_000  # images in one grid PNG; more go to --out-dir only

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
SeedOpt = Annotated[int | None, typer.Option("--seed", help="noise seed (default: drawn at random and printed)")]
ScaleOpt = Annotated[int, typer.Option(
    "--scale", help="nearest-neighbour upscaling factor for viewing (a picture is capped at 8192x8192 pixels)")]


def note(message: str) -> None:
    print(message, file=sys.stderr)


def fail(error: UserError) -> typer.Exit:
    note(f"error: {error}")
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


def load(model: Path | None, provider: str):
    from .generator import OnnxGenerator, resolve_model

    path = resolve_model(model, provider)
    generator = OnnxGenerator.load(path, provider)
    if generator.note and provider == "auto":
        note(f"note: CUDA not used ({generator.note}); running on CPU")
    kind = f"conditional, {generator.num_classes} classes" if generator.conditional else "unconditional"
    colour = ", RGB" if generator.channels == 3 else ""
    note(f"model: {path} ({generator.image_size}x{generator.image_size}{colour}, {kind}); "
         f"provider: {generator.provider}")
    return generator


def parse_digits(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        digits = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--digit {text!r}: give a digit or a list such as 0,1,2") from None
    if not digits:
        raise UserError("--digit: give at least one digit")
    return digits


def pick_seed(seed: int | None) -> int:
    from .images import random_seed

    if seed is None:
        seed = random_seed()
        note(f"seed: {seed} (pass --seed {seed} to reproduce)")
    elif seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    return seed


def check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_writable(path: Path, what: str) -> None:
    """Fail before any work if `path` cannot be created (parent folders are created)."""
    import os

    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot create {parent} ({e.strerror or e})") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"{what} {path}: {parent} is not writable")


@app.command()
def infer(
    n: Annotated[int, typer.Option("--n", help="how many digits to generate")] = 64,
    out: Annotated[Path | None, typer.Option("--out", help="grid PNG to write (default grid.png)")] = None,
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
    nrow: Annotated[
        int | None, typer.Option("--nrow", help="images per grid row (default: 10 when cycling 0-9)")
    ] = None,
    scale: ScaleOpt = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per onnxruntime call")] = 256,
    provider: ProviderOpt = "auto",
) -> None:
    """Generate N digits into a grid PNG (and/or one PNG per digit).

    Without --digit a conditional model cycles 0-9, so each grid row reads 0123456789.

    Examples: mnist-gen infer --n 64 --out grid.png; mnist-gen infer --digit 0,1 --n 1000 --out-dir digits/
    """
    try:
        _infer(n, out, out_dir, model, digit, class_, seed, nrow, scale, batch_size, provider)
    except UserError as e:
        raise fail(e) from None


def _infer(n, out, out_dir, model, digit, class_, seed, nrow, scale, batch_size, provider) -> None:
    import numpy as np

    from .files import save_png, upscale
    from .images import assemble, draw, plan_grid

    check_positive(n=n, nrow=nrow, scale=scale, batch_size=batch_size)
    if digit is not None and class_ is not None:
        raise UserError("give --digit or --class, not both")
    digits = parse_digits(digit)
    if out is None and out_dir is None:
        out = Path("grid.png")
    if out is not None:
        if n > GRID_CAP:
            raise UserError(f"--n {n}: a grid holds at most {GRID_CAP} images; use --out-dir alone for more")
        check_writable(out, "--out")
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--out-dir {out_dir} is a file")
        check_writable(out_dir / "x.png", "--out-dir")

    generator = load(model, provider)
    if class_ is not None:
        digits = [generator.class_index(name.strip()) for name in class_.split(",") if name.strip()]
    grid = plan_grid(generator, n, digits, nrow, scale, name="--class" if class_ is not None else "--digit")
    grid.check_size(whole_grid=out is not None)
    tiles = None
    for start, images in draw(generator, grid, pick_seed(seed), batch_size):
        if out is not None:
            if tiles is None:  # [n, H, W] grey or [n, H, W, 3] colour, as the model draws them
                tiles = np.empty((n, *images.shape[1:]), np.uint8)
            tiles[start : start + len(images)] = images
        if out_dir is not None:
            for i, image in enumerate(images, start):
                name = f"{i:06d}_digit{grid.labels[i]}.png" if grid.labels is not None else f"{i:06d}.png"
                save_png(out_dir / name, upscale(image, scale))
    if out is not None:
        save_png(out, assemble(grid, tiles))
        print(f"wrote {out} ({n} digits, {grid.nrow} per row)")
    if out_dir is not None:
        print(f"wrote {n} PNGs to {out_dir}")


@app.command()
def interpolate(
    digit: Annotated[int | None, typer.Option("--digit", help="digit to walk through (conditional models)")] = None,
    to: Annotated[
        int | None, typer.Option("--to", help="end on this digit instead (cross-fades along the walk)")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="frames in the walk")] = 10,
    out: Annotated[Path, typer.Option("--out", help="a .png strip or an animated .gif")] = Path("interpolation.png"),
    model: ModelOpt = None,
    seed: SeedOpt = None,
    scale: ScaleOpt = 2,
    provider: ProviderOpt = "auto",
) -> None:
    """A smooth latent walk (slerp between two noise vectors), as a PNG strip or an animated GIF.

    Examples: mnist-gen interpolate --digit 3 --out walk.png; mnist-gen interpolate --digit 1 --to 7 --out morph.gif
    """
    try:
        _interpolate(digit, to, steps, out, model, seed, scale, provider)
    except UserError as e:
        raise fail(e) from None


def _interpolate(digit, to, steps, out, model, seed, scale, provider) -> None:
    from .files import save_gif, save_png
    from .images import render_walk, walk_strip

    check_positive(steps=steps, scale=scale)
    if steps < 2:
        raise UserError("--steps must be >= 2")
    if out.suffix.lower() not in (".png", ".gif"):
        raise UserError(f"--out {out}: use a .png (strip) or .gif (animation) file name")
    check_writable(out, "--out")
    generator = load(model, provider)
    frames = render_walk(generator, pick_seed(seed), steps, digit, to, scale=scale)
    if out.suffix.lower() == ".gif":
        save_gif(out, frames + frames[-2:0:-1], duration_ms=120)  # there and back again
    else:
        save_png(out, walk_strip(frames, scale))
    print(f"wrote {out} ({steps} steps)")


@app.command()
def info(model: ModelOpt = None, provider: ProviderOpt = "auto") -> None:
    """The model's metadata, size, inputs and outputs, and which onnxruntime provider really runs it."""
    try:
        import onnxruntime as ort

        generator = load(model, provider)
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
) -> None:
    """Images/s and latency per batch size on the chosen provider, optionally against a second model.

    Example: mnist-gen bench --model fp32 --compare int8
    """
    try:
        _bench(model, provider, batch_sizes, seconds, compare)
    except UserError as e:
        raise fail(e) from None


def _bench(model, provider, batch_sizes, seconds, compare=None) -> None:

    import numpy as np

    try:
        sizes = [int(b) for b in batch_sizes.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes {batch_sizes!r}: give integers such as 1,64,256") from None
    check_positive(batch_size=min(sizes))
    if not seconds > 0:
        raise UserError(f"--seconds must be > 0, got {seconds}")
    generators = [load(model, provider)] + ([load(compare, provider)] if compare is not None else [])
    if len({(g.latent_dim, g.num_classes) for g in generators}) > 1:
        raise UserError("--compare: the two models take different inputs (latent size or classes)")
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
) -> None:
    """FID, Inception Score, class shares, diversity and conditional accuracy, next to real data's own.

    Scored with the project's MNIST classifier (bundled), or --scorer DIR for other data; images of another
    size are resized to the classifier's. Conditional models are asked for each class in turn.
    Example: mnist-gen score --n 10000 --json
    """
    try:
        _score(model, n, seed, as_json, batch_size, provider, scorer)
    except UserError as e:
        raise fail(e) from None


def _score(model, n, seed, as_json, batch_size, provider, scorer) -> None:
    import json

    import numpy as np

    from .score import check_scorer_fits, load_scorer, score_generator

    check_positive(n=n, batch_size=batch_size)
    classifier, stats = load_scorer(scorer)
    generator = load(model, provider)
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
def serve(
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on; 0.0.0.0 makes the page reachable from the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port, printed)")] = 8000,
    provider: ProviderOpt = "auto",
) -> None:
    """A web page and HTTP API for the generator, until Ctrl-C (needs pip install "mnist-gen\\[serve]").

    The page draws grids and latent walks; the API is /api/generate, /api/interpolate, /api/info, /healthz
    (schema at /openapi.json). Example: mnist-gen serve --port 8000, then open http://127.0.0.1:8000/
    """
    try:
        _serve(model, host, port, provider)
    except UserError as e:
        raise fail(e) from None


def _serve(model, host, port, provider) -> None:
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"mnist-gen serve needs {' and '.join(missing)}, which the base install leaves out: "
                        "pip install \"mnist-gen[serve]\" (from a clone: pip install \".[serve]\")")
    from .serve import listen
    from .serve import serve as run_server

    sock = listen(host, port)  # a port in use fails before the model loads
    run_server(load(model, provider), sock)
