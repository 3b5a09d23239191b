"""`mnist-gen site`: a static folder, served by a plain static file server, whose page draws the digits in the
browser (onnxruntime-web in Debian's chromium, driven by Playwright as in test_serve_browser.py), with the
pixels of `mnist-gen infer` for the same model, seed and options.

The first build downloads onnxruntime-web's tarball from the npm registry (33 MB, then cached); CI has it.
"""

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, python_m, run, walk_from_seed_1_to_2
from PIL import Image
from test_serve_browser import READ_PIXELS

sys.path.insert(0, str(REPO / "benchmarks"))
from site_speed import static_server  # noqa: E402 - Python's static file server, as the benchmark runs it

from infer.generator import BUNDLED, OnnxGenerator
from infer.images import render_walk
from infer.noise import latents

SEEDS = [0, 1, 2**63 + 5, 2**64 - 1]


def build(out: Path, model: str | Path | None = None) -> Path:
    result = python_m("infer", "site", "--out", str(out), *(["--model", str(model)] if model else []))
    assert result.returncode == 0, result.stderr
    return out


def infer_grid(tmp_path: Path, model: str | Path, *options: str) -> np.ndarray:
    out = tmp_path / "infer.png"
    result = python_m("infer", "infer", "--model", str(model), "--provider", "cpu", "--out", str(out), *options)
    assert result.returncode == 0, result.stderr
    return np.asarray(Image.open(out))


def shown_grid(page) -> np.ndarray:
    grid = page.locator("#grid")
    width, height = grid.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    return np.array(grid.evaluate(READ_PIXELS), np.uint8).reshape(height, width, 4)


def assert_same_pixels(shown: np.ndarray, expected: np.ndarray) -> None:
    """The page's grid has infer's pixels on >= 99.9% of them, none off by more than one grey level."""
    if expected.ndim == 2:
        expected = np.repeat(expected[..., None], 3, axis=2)
    assert shown.shape[:2] == expected.shape[:2]
    assert (shown[..., 3] == 255).all()
    diff = np.abs(shown[..., :3].astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"a pixel is off by {diff.max()} grey levels"
    assert (diff == 0).mean() >= 0.999, f"only {(diff == 0).mean():.4%} of the pixels are equal"


def open_site(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_text("onnxruntime-web 1.30.0").wait_for(timeout=60_000)  # the model loaded in the page
    return page


def draw(page, n: int, seed: int, scale: int, digit: str | None = None) -> None:
    if digit is not None:
        page.get_by_label("Digit", exact=True).select_option(digit)
    page.get_by_label("How many").fill(str(n))
    page.get_by_label("Seed", exact=True).fill(str(seed))
    page.get_by_label("Scale").fill(str(scale))
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(f"{n} digits, seed {seed}").wait_for()


@pytest.fixture(scope="module")
def bundled_site(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("site") / "site")


def test_bundled_site_draws_infers_digits(browser, bundled_site, tmp_path):
    """The default site (bundled int8 model): same grid as infer, download, walk, bad input, one thread."""
    site_json = (bundled_site / "site.json").read_text()
    assert "generator.int8.onnx" in site_json and (bundled_site / "ort" / "ort-wasm-simd-threaded.wasm").is_file()
    with static_server(bundled_site) as (url, _):
        page = open_site(browser, url)
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        assert page.get_by_text("1 thread (not cross-origin isolated)").is_visible()
        seed = 2**64 - 1
        draw(page, 20, seed, 2)
        expected = infer_grid(tmp_path, "int8", "--n", "20", "--seed", str(seed), "--scale", "2")
        assert_same_pixels(shown_grid(page), expected)

        with page.expect_download() as download:
            page.get_by_role("link", name="Download PNG").click()
        assert download.value.suggested_filename == f"mnist-gen_seed{seed}.png"
        download.value.save_as(tmp_path / "download.png")
        assert_same_pixels(np.asarray(Image.open(tmp_path / "download.png").convert("RGBA")), expected)

        # The latent walk: frames are drawn in the page and the slider moves through them.
        walk_from_seed_1_to_2(page)
        frames = render_walk(OnnxGenerator.load(BUNDLED["int8"], "cpu"), 1, 16, 0, to_seed=2, scale=4)
        for step in (0, 7, 15):  # the frames of `mnist-gen interpolate --seed 1` (walking to seed 2's first digit)
            page.get_by_label("Step", exact=True).fill(str(step))
            png = base64.b64decode(page.locator("#walk-frame").get_attribute("src").split(",", 1)[1])
            assert_same_pixels(np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")), frames[step])

        # Bad input is refused in the page, in the server's words.
        for label, value, message in [
            ("How many", "300", "error: n=300: Input should be less than or equal to 256"),
            ("Scale", "9", "error: scale=9: Input should be less than or equal to 8"),
            ("Seed", "abc", "error: seed=abc: Input should be a valid integer"),
            ("Seed", str(2**64), f"error: seed={2**64}: Input should be less than or equal to {2**64 - 1}"),
        ]:
            page.get_by_label(label, exact=True).fill(value)
            page.get_by_role("button", name="Generate").click()
            page.get_by_text(message).wait_for()
            page.reload()
            page.get_by_text("onnxruntime-web 1.30.0").wait_for(timeout=60_000)
        elsewhere = [r for r in requests if not r.startswith((url, "blob:", "data:"))]
        assert not elsewhere, f"the page fetched from elsewhere: {elsewhere}"

        draw(page, 20, seed, 2)
        page.screenshot(path=tmp_path / "site.png", full_page=True)
        page.goto((bundled_site / "index.html").as_uri())  # opened as a file, it says what to do instead
        page.get_by_text("error: open this page through a web server").wait_for()
        print(f"screenshot: {tmp_path / 'site.png'}")


def test_js_noise_is_numpys(browser, bundled_site):
    """noise.js draws infer/noise.py's z, bit for bit, over the whole seed range."""
    with static_server(bundled_site) as (url, _):
        page = browser.new_page()
        page.goto(url)
        for seed in SEEDS:
            bits = page.evaluate("seed => Array.from(new Uint32Array(NOISE.latents(BigInt(seed), 7, 3, 101).buffer))",
                                 str(seed))
            assert np.array_equal(np.array(bits, np.uint32), latents(seed, 7, 3, 101).view(np.uint32).ravel()), seed


@pytest.mark.parametrize("kind", ["grey", "colour", "unconditional"])
def test_fresh_models_sites(browser, kind, cond_onnx, rgb_onnx, uncond_onnx, tmp_path):
    """Sites of freshly trained-and-exported tiny models, grey, colour with class names, and unconditional."""
    model = {"grey": cond_onnx, "colour": rgb_onnx, "unconditional": uncond_onnx}[kind]
    site = build(tmp_path / "site", model)
    with static_server(site, isolated=kind == "grey") as (url, _):
        page = open_site(browser, url + ("?threads=2" if kind == "grey" else ""))
        if kind == "grey":  # cross-origin isolated: threads, and the same pixels
            assert page.get_by_text("2 threads (cross-origin isolated)").is_visible()
        digit = {"grey": "3", "colour": "2", "unconditional": None}[kind]
        if kind == "colour":
            assert page.locator("#digit option", has_text="2: fox").count() == 1
        if kind == "unconditional":
            assert page.get_by_label("Digit", exact=True).is_hidden()
        draw(page, 12, 2**63 + 5, 3, digit)
        options = ["--n", "12", "--seed", str(2**63 + 5), "--scale", "3"] + (["--digit", digit] if digit else [])
        assert_same_pixels(shown_grid(page), infer_grid(tmp_path, model, *options))
        page.screenshot(path=tmp_path / f"site-{kind}.png", full_page=True)
        print(f"screenshot: {tmp_path / f'site-{kind}.png'}")


def test_site_refuses_bad_out_and_models(tmp_path):
    """--out not empty, --out not writable, a model that is not a generator: one line, exit 2, nothing written."""
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = python_m("infer", "site", "--out", str(taken))
    assert_one_line_error(result)
    assert result.returncode == 2 and "not an empty folder" in result.stderr
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = python_m("infer", "site", "--out", str(a_file / "site"))
    assert_one_line_error(result)
    assert result.returncode == 2 and "cannot write" in result.stderr

    classifier = Path(sys.modules["infer"].__file__).parent / "assets" / "classifier.onnx"
    result = python_m("infer", "site", "--out", str(tmp_path / "site"), "--model", str(classifier))
    assert_one_line_error(result)
    assert result.returncode == 2 and "not an mnist-gen generator" in result.stderr
    result = python_m("infer", "site", "--out", str(tmp_path / "site"), "--onnxruntime-web", str(a_file))
    assert_one_line_error(result)
    assert result.returncode == 2 and "hash differs" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]  # no site, no temporary folder


def test_speed_benchmark_quick_mode_runs():
    """benchmarks/site_speed.py --quick (CI's size) builds a site, loads it cold and prints its rates."""
    result = run(sys.executable, str(REPO / "benchmarks" / "site_speed.py"), "--quick", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "MB downloaded" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(" ") and "generator.int8" in line]
    assert [row[1:3] for row in rows] == [["1", "1"], ["1", "64"]] and all(float(row[3]) > 0 for row in rows)
