"""Speed of the static site of `mnist-gen site` in headless Chromium, beside Python onnxruntime in this process.

Builds a site per model (bundled int8 and fp32), serves each from a loopback static file server and drives
Debian's chromium with Playwright. Prints, per model:
- the cold load: a fresh browser context (empty cache) from navigation to the first grid (20 digits) drawn,
  on a plain static server (not cross-origin isolated: one thread, as on most hosts), and the bytes served;
- how many of the page's pixels equal `mnist-gen infer`'s (the renderer in this process) on 256-digit grids;
- images/s of onnxruntime-web at batch 1 and 64 with one thread and two (the server then sends the COOP/COEP
  headers that give the page threads), next to Python onnxruntime's CPU provider with the same threads on
  the same z in this process, and the ratio browser / Python.

    python benchmarks/site_speed.py [--seconds 2] [--quick]

--quick (what CI can afford): the int8 model, one thread, 0.3 s per batch size.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Images/s of onnxruntime-web in the page: `batch` images per call, repeated for `seconds` after a warm-up.
BROWSER_RATE = """async ([batch, seconds]) => {
  const { info, backend } = window.mnistGen;
  const z = NOISE.latents(0, 0, batch, info.latent_dim);
  const labels = Array.from({ length: batch }, (_, i) => i % Math.max(1, info.num_classes));
  await backend.run(z, labels);
  let images = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) { await backend.run(z, labels); images += batch; }
  return images / ((performance.now() - start) / 1000);
}"""


class StaticFiles(http.server.SimpleHTTPRequestHandler):
    """Python's static file server, counting the bytes it sends; `isolated` sends the headers for threads."""

    isolated = False
    sent = 0

    def end_headers(self):
        if self.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def copyfile(self, source, outputfile):
        type(self).sent += len(data := source.read())
        outputfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def static_server(folder: Path, isolated: bool = False):
    """Serve `folder` on a free loopback port; yield (URL, the handler class, whose `sent` counts bytes)."""
    handler = type("Handler", (StaticFiles,), {"isolated": isolated, "sent": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url: str):
    """A fresh context (empty cache), the page loaded and its model ready."""
    page = browser.new_context().new_page()
    page.goto(url)
    page.get_by_text("onnxruntime-web").first.wait_for(timeout=120_000)
    return page


def cold_load(browser, site: Path) -> tuple[float, int]:
    """Seconds from navigation to the first grid of 20 digits, and the bytes the visitor downloaded."""
    with static_server(site) as (url, handler):
        start = time.perf_counter()
        page = open_page(browser, url)
        page.get_by_label("Seed", exact=True).fill("0")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("digits, seed 0").wait_for(timeout=120_000)
        seconds = time.perf_counter() - start
        page.context.close()
        return seconds, handler.sent


# The grid the page shows, read back as RGBA.
READ_GRID = """() => {
  const img = document.getElementById("grid");
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
  canvas.getContext("2d").drawImage(img, 0, 0);
  return Array.from(canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data);
}"""


def pixel_parity(page, model: Path, seeds) -> tuple[float, int]:
    """Share of equal pixels and the largest difference, page against infer's renderer, over 256-digit grids."""
    import numpy as np

    from infer.generator import OnnxGenerator
    from infer.images import plan_grid, render_grid

    generator = OnnxGenerator.load(model, "cpu")
    equal = total = worst = 0
    for seed in seeds:
        page.get_by_label("How many").fill("256")
        page.get_by_label("Seed", exact=True).fill(str(seed))
        page.get_by_label("Scale").fill("1")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text(f"256 digits, seed {seed}").wait_for(timeout=120_000)
        expected = render_grid(generator, plan_grid(generator, 256), seed)
        shown = np.array(page.evaluate(READ_GRID), np.uint8).reshape(*expected.shape[:2], 4)[..., 0]
        diff = np.abs(shown.astype(int) - expected.astype(int))
        equal, total, worst = equal + int((diff == 0).sum()), total + diff.size, max(worst, int(diff.max()))
    return equal / total, worst


def python_rate(model: Path, batch: int, threads: int, seconds: float) -> float:
    import numpy as np

    from infer.generator import OnnxGenerator
    from infer.noise import latents

    generator = OnnxGenerator.load(model, "cpu", threads=threads)
    z, labels = latents(0, 0, batch, generator.latent_dim), np.arange(batch) % max(1, generator.num_classes)
    generator.run(z, labels)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        generator.run(z, labels)
        images += batch
    return images / (time.perf_counter() - start)


def measure(browser, site: Path, model: Path, threads_list, batches, seconds: float) -> None:
    load_s, sent = cold_load(browser, site)
    print(f"{model.name}: first grid {load_s:.2f} s after navigation on a cold load (1 thread); "
          f"{sent / 1e6:.2f} MB downloaded")
    with static_server(site, isolated=True) as (url, _):
        seeds = [0] if len(threads_list) == 1 else [0, 1, 2]
        share, worst = pixel_parity(open_page(browser, url), model, seeds)
        print(f"pixels equal to mnist-gen infer's: {share:.4%} of 256-digit grids at seeds {seeds}, "
              f"largest difference {worst} grey level(s)")
        print(f"{'model':>22} {'threads':>7} {'batch':>5} {'web img/s':>12} {'python img/s':>12} {'web/python':>9}")
        for threads in threads_list:
            page = open_page(browser, f"{url}?threads={threads}")
            for batch in batches:
                web = page.evaluate(BROWSER_RATE, [batch, seconds])
                native = python_rate(model, batch, threads, seconds)
                print(f"{model.name:>22} {threads:>7} {batch:>5} {web:>12.0f} {native:>12.0f} {web / native:>9.2f}")
            page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per batch size")
    parser.add_argument("--quick", action="store_true", help="int8 only, one thread, 0.3 s per batch size")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from infer.generator import BUNDLED
    from infer.site import build_site

    models = ["int8"] if args.quick else ["int8", "fp32"]
    threads_list = [1] if args.quick else [1, 2]
    seconds = 0.3 if args.quick else args.seconds
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        print(f"chromium {browser.version}; headless, loopback static server")
        for name in models:
            site = Path(tmp) / name
            build_site(site, name)
            measure(browser, site, BUNDLED[name], threads_list, [1, 64], seconds)
        browser.close()


if __name__ == "__main__":
    main()
