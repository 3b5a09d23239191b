"""The page of `mnist-gen serve` in a real headless browser: Debian's chromium driven by Playwright.

`playwright install` downloads browsers and cannot work here; Playwright drives the system chromium
(`apt-get install chromium`, which .ci/run does when it is missing). In CI a missing browser fails.
"""

import io
import sys

import numpy as np
from conftest import http_get, served, walk_from_seed_1_to_2
from PIL import Image

# Draw the displayed <img> onto a canvas and read its pixels back: what the user really sees, decoded.
READ_PIXELS = """img => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
}"""


def test_page_generates_the_api_grid(browser, cond_onnx, tmp_path):
    command = [sys.executable, "-m", "infer", "serve", "--model", str(cond_onnx), "--port", "0"]
    with served(*command, cwd=tmp_path) as (_, url):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_text("CPUExecutionProvider").wait_for()  # the model card loaded from /api/info
        page.get_by_label("Digit", exact=True).select_option("7")
        page.get_by_label("How many").fill("12")
        page.get_by_label("Seed", exact=True).fill("5")
        page.get_by_label("Scale").fill("2")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("12 digits, seed 5").wait_for()

        grid = page.locator("#grid")
        assert grid.evaluate("img => img.complete && img.naturalWidth > 0")
        rgba = np.array(grid.evaluate(READ_PIXELS), np.uint8)
        status, _, png = http_get(url + "api/generate?digit=7&n=12&seed=5&scale=2")
        assert status == 200
        expected = np.asarray(Image.open(io.BytesIO(png)))
        shown = rgba.reshape(*expected.shape, 4)
        assert np.array_equal(shown[..., 0], expected) and (shown[..., 3] == 255).all()
        assert page.locator("#download").get_attribute("download") == "mnist-gen_seed5.png"

        # The latent walk: frames arrive and the slider moves through them.
        walk_from_seed_1_to_2(page)

        # Bad input reaches the page as the server's one-line message.
        page.get_by_label("How many").fill("0")
        page.get_by_label("How many").evaluate("input => input.removeAttribute('min')")  # past the form's own check
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("error: n=0: Input should be greater than or equal to 1").wait_for()
        page.get_by_label("How many").fill("12")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("12 digits, seed 5").wait_for()

        page.screenshot(path=tmp_path / "page-desktop.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
        page.screenshot(path=tmp_path / "page-phone.png", full_page=True)
        print(f"screenshots: {tmp_path / 'page-desktop.png'} {tmp_path / 'page-phone.png'}")


def test_page_is_keyboard_usable(browser, cond_onnx, tmp_path):
    """Every control has a label, and Tab walks them in reading order; Enter in the form generates."""
    command = [sys.executable, "-m", "infer", "serve", "--model", str(cond_onnx), "--port", "0"]
    with served(*command, cwd=tmp_path) as (_, url):
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("CPUExecutionProvider").wait_for()
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button')]
            .filter(e => !e.labels?.length && !e.textContent.trim()).map(e => e.id)""")
        assert unlabelled == []
        order = []
        for _ in range(6):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id"))
        assert order == ["digit", "n", "seed", "scale", "generate", "walk-seed"]
        page.locator("#seed").focus()
        page.keyboard.type("3")
        page.keyboard.press("Enter")
        page.get_by_text("seed 3").first.wait_for()
        status, _, body = http_get(url + "healthz")
        assert status == 200
