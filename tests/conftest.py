"""Shared fixtures: tiny real models, exported once per test session through the real exporter."""

from __future__ import annotations

import contextlib
import io
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Small widths keep every export and run fast; the architecture is the shipped one.
TINY = {"g_width": 8, "d_width": 8}


def run(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run a real command (python -m trainer / exporter / infer ...) and capture its output."""
    return subprocess.run(list(args), cwd=cwd or REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def python_m(module: str, *args: str, **kw):
    return run(sys.executable, "-m", module, *args, **kw)


def in_process(main, *args: str) -> subprocess.CompletedProcess:
    """Call a command's `main(argv)` here, as `python -m` would, without starting an interpreter per case.

    For bad-input loops: each command keeps one case through the real `python -m`, the rest run here.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["main", *args], code, out.getvalue(), err.getvalue())


RUN_OUTPUTS = ["generator.pth", "discriminator.pth", "checkpoints/last.pt", "checkpoints/epoch_001.pt",
               "samples/epoch_001.png", "progress.gif", "loss_curve.png", "metrics.jsonl", "real_vs_fake.png",
               "interpolation.png", "model_summary.txt", "config.json"]


def assert_run_outputs(out: Path) -> None:
    """A one-epoch run wrote every file a user expects, none empty, and no temporary file is left."""
    for name in RUN_OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def write_cifar(folder: Path, records: int = 20, truncate: int = 0) -> Path:
    """CIFAR-10's binary batches (1 label byte + 3072 pixel bytes per record), `records` each, maybe truncated."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rows = np.concatenate([(np.arange(records) % 10)[:, None], rng.integers(0, 256, (records, 3072))], axis=1)
        raw = rows.astype(np.uint8).tobytes()
        (folder / name).write_bytes(raw[: len(raw) - truncate])
    return folder


def assert_one_line_error(result) -> None:
    """Bad input: non-zero exit, one `error:` line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr


def save_random_generator(path: Path, image_size: int = 28, num_classes: int = 10, seed: int = 0,
                          channels: int = 1, class_names: tuple = (), **widths) -> Path:
    import torch

    from trainer.checkpoint import generator_file, save_atomic
    from trainer.model import ModelConfig, build_models

    torch.manual_seed(seed)
    cfg = ModelConfig(image_size=image_size, num_classes=num_classes, channels=channels, class_names=class_names,
                      d_blocks=0, **(widths or TINY))  # D only moves the random draws: keep the models as they were
    generator, _ = build_models(cfg)
    # Random weights, but BatchNorm statistics like a trained model's, so outputs are not degenerate.
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.normal_(0, 0.1)
    save_atomic(generator_file(generator, epochs=1), path)
    return path


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict:
    """(image_size, conditional) -> (generator.pth, exported generator.onnx, export report)."""
    from exporter.export import export

    root = tmp_path_factory.mktemp("models")
    result = {}
    for size in (28, 64):
        for conditional in (True, False):
            name = f"g{size}_{'cond' if conditional else 'uncond'}"
            pth = save_random_generator(root / f"{name}.pth", size, 10 if conditional else 0)
            report = export(pth, root / f"{name}.onnx")
            result[size, conditional] = (pth, report.path, report)
    return result


@pytest.fixture(scope="session")
def rgb_onnx(tmp_path_factory) -> Path:
    """A conditional RGB generator at 32 px with named classes, exported through the real exporter."""
    from exporter.export import export

    root = tmp_path_factory.mktemp("rgb")
    pth = save_random_generator(root / "rgb.pth", 32, 3, channels=3, class_names=("cat", "dog", "fox"))
    return export(pth, root / "rgb.onnx").path


@pytest.fixture(scope="session")
def cond_onnx(models) -> Path:
    return models[28, True][1]


@pytest.fixture(scope="session")
def uncond_onnx(models) -> Path:
    return models[28, False][1]


@contextlib.contextmanager
def served(*command: str, cwd: Path | None = None, timeout: float = 60):
    """Start a real `mnist-gen serve --port 0 ...` process, yield (process, its URL), then stop it with SIGTERM.

    The server prints `serving URL` on stdout once it listens; port 0 lets the system pick a free port.
    """
    process = subprocess.Popen(list(command), cwd=cwd or REPO, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("serving http://"), f"no URL printed: {line!r} {process.poll()} {process.stderr.read()}"
        yield process, line.split()[1]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def http_get(url: str, timeout: float = 60) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body) of a GET, errors included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture(scope="session")
def int8_onnx(cond_onnx, tmp_path_factory) -> Path:
    """The tiny conditional generator quantized (gate skipped: tested on the real model in test_quantize.py)."""
    from exporter.quantize import quantize

    return quantize(cond_onnx, tmp_path_factory.mktemp("int8") / "g8.onnx", calibration=64, check=False).path


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright, one per test module (`playwright install` cannot work here)."""
    if not Path(CHROMIUM).exists():
        message = "no chromium: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def walk_from_seed_1_to_2(page) -> None:
    """The page's latent walk from seed 1 to seed 2: 16 frames arrive and the slider moves through them."""
    page.get_by_label("From seed").fill("1")
    page.get_by_label("To seed").fill("2")
    page.get_by_role("button", name="Walk").click()
    page.get_by_text("16 steps from seed 1 to seed 2").wait_for()
    first = page.locator("#walk-frame").get_attribute("src")
    page.get_by_label("Step", exact=True).fill("15")
    assert page.locator("#walk-frame").get_attribute("src") != first
    assert page.locator("#walk-step-label").inner_text() == "16 / 16"
