"""The runtime installs (`pip install mnist-gen`, and with the serve extra) have no torch, and `mnist-gen`
and `mnist-gen serve` work there."""

import re
import subprocess
import sys
import venv

import pytest
from conftest import REPO, assert_one_line_error, http_get, served


def make_env(root, requirement: str):
    """A real virtual environment with `pip install requirement` and nothing else."""
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              requirement], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr
    return root


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory):
    """The base install of this project."""
    return make_env(tmp_path_factory.mktemp("runtime-venv"), str(REPO))


@pytest.fixture(scope="module")
def serve_env(tmp_path_factory):
    """The base install plus the serve extra."""
    return make_env(tmp_path_factory.mktemp("serve-venv"), f"{REPO}[serve]")


@pytest.mark.parametrize("env", ["runtime_env", "serve_env"])
def test_install_has_no_torch(env, request):
    python = request.getfixturevalue(env) / "bin" / "python"
    probe = "import importlib.util as u; print([m for m in ('torch', 'torchvision') if u.find_spec(m)])"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"


def test_cli_runs_without_torch(runtime_env, cond_onnx, int8_onnx, tmp_path):
    out = tmp_path / "grid.png"
    command = [str(runtime_env / "bin" / "mnist-gen"), "infer", "--model", str(cond_onnx), "--n", "16", "--seed", "0",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    # Same bytes as in the full (torch) environment: the runtime does not depend on what else is installed.
    twin = tmp_path / "twin.png"
    subprocess.run([sys.executable, "-m", "infer", "infer", "--model", str(cond_onnx), "--n", "16", "--seed", "0",
                    "--out", str(twin)], check=True, capture_output=True, cwd=REPO)
    assert out.read_bytes() == twin.read_bytes()
    # An int8 model runs there too (onnxruntime's own int8 kernels, nothing of the exporter's).
    int8_grid = tmp_path / "int8.png"
    command = [str(runtime_env / "bin" / "mnist-gen"), "infer", "--model", str(int8_onnx), "--n", "16", "--seed", "0",
               "--out", str(int8_grid)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and int8_grid.stat().st_size > 0, result.stderr
    # Both bundled generators and the scoring classifier are installed with the package; int8 runs on CPU.
    for model, file in (([], "generator.int8.onnx"), (["--model", "fp32"], "generator.onnx")):
        command = [str(runtime_env / "bin" / "mnist-gen"), "score", "--n", "300", "--json", "--provider", "cpu", *model]
        scored = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert scored.returncode == 0, scored.stderr
        assert f"site-packages/infer/assets/{file}" in scored.stdout


def test_infer_modules_import_nothing_of_torch_or_training(runtime_env):
    code = ("import sys, mnist_gen, infer.cli, infer.generator, infer.files, infer.latent, infer.images, infer.score, "
            "infer.api, infer.noise, infer.oip, infer.site; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trainer', 'exporter'}); print(bad)")
    result = subprocess.run([str(runtime_env / "bin" / "python"), "-c", code], capture_output=True, text=True,
                            cwd=runtime_env)  # the installed package, not the repository's infer/
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_site_builds_from_the_base_install(runtime_env, tmp_path):
    """`mnist-gen site` needs nothing beyond the base install: the page's files ship in the wheel."""
    out = tmp_path / "site"
    result = subprocess.run([str(runtime_env / "bin" / "mnist-gen"), "site", "--out", str(out)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("index.html", "static/app.js", "static/noise.js", "static/render.js", "generator.int8.onnx",
                 "site.json", "ort/ort-wasm-simd-threaded.wasm"):
        assert (out / name).is_file(), name


def test_base_install_leaves_training_data_out(runtime_env):
    """MNIST (11 MB) is for training: the runtime install carries the generator and scorer, not the data."""
    code = "import infer, pathlib; print(pathlib.Path(infer.__file__).parents[1])"
    site = subprocess.run([str(runtime_env / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          cwd=runtime_env)  # not the repository, whose own infer/ would be found first
    assert "site-packages" in site.stdout, site.stdout + site.stderr
    site_packages = __import__("pathlib").Path(site.stdout.strip())
    assert (site_packages / "infer" / "assets" / "generator.onnx").is_file()
    assert not list(site_packages.glob("trainer/mnist*")) and not list(site_packages.rglob("*idx3-ubyte*"))


def test_serve_without_the_extra_says_what_to_install(runtime_env, cond_onnx, tmp_path):
    result = subprocess.run([str(runtime_env / "bin" / "mnist-gen"), "serve", "--model", str(cond_onnx)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert_one_line_error(result)
    assert 'pip install "mnist-gen[serve]"' in result.stderr


def test_serve_runs_without_torch(serve_env, cond_onnx, tmp_path):
    """The serve install starts `mnist-gen serve`, never imports torch, and answers with the bytes `infer` writes."""
    twin = tmp_path / "twin.png"
    subprocess.run([sys.executable, "-m", "infer", "infer", "--model", str(cond_onnx), "--n", "16", "--seed", "0",
                    "--out", str(twin)], check=True, capture_output=True, cwd=REPO)
    with served(str(serve_env / "bin" / "mnist-gen"), "serve", "--model", str(cond_onnx), "--port", "0",
                cwd=tmp_path) as (_, url):
        status, headers, body = http_get(url + "api/generate?n=16&seed=0")
        assert status == 200 and body == twin.read_bytes()
        assert http_get(url)[0] == 200  # the page ships inside the package
        assert http_get(url + "static/app.js")[0] == 200
    code = ("import sys, infer.serve; bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trainer', "
            "'exporter'}); print(bad)")
    result = subprocess.run([str(serve_env / "bin" / "python"), "-c", code], capture_output=True, text=True,
                            cwd=serve_env)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_colour_model_with_class_names_runs_without_torch(runtime_env, rgb_onnx, tmp_path):
    """RGB PNGs and --class NAME in the runtime install, the same bytes as in the full environment."""
    from PIL import Image

    out, twin = tmp_path / "grid.png", tmp_path / "twin.png"
    args = ["infer", "--model", str(rgb_onnx), "--class", "fox,cat", "--n", "6", "--seed", "3", "--out"]
    result = subprocess.run([str(runtime_env / "bin" / "mnist-gen"), *args, str(out)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    subprocess.run([sys.executable, "-m", "infer", *args, str(twin)], check=True, capture_output=True, cwd=REPO)
    assert out.read_bytes() == twin.read_bytes()
    with Image.open(out) as image:
        assert image.mode == "RGB" and image.size == (2 * 34 + 2, 3 * 34 + 2)  # 2 per row (two classes), 3 rows
    info = subprocess.run([str(runtime_env / "bin" / "mnist-gen"), "info", "--model", str(rgb_onnx)],
                          capture_output=True, text=True, timeout=120)
    assert "classes:    0=cat, 1=dog, 2=fox" in info.stdout


def test_readme_python_example_runs_without_torch(runtime_env, tmp_path):
    """The README's Python API example, as written, in the torch-free install: the grid `mnist-gen infer` writes."""
    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(import mnist_gen\n.*?)```", text, re.S).group(1)
    result = subprocess.run([str(runtime_env / "bin" / "python"), "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cli = subprocess.run([str(runtime_env / "bin" / "mnist-gen"), "infer", "--n", "64", "--seed", "0", "--out",
                          "cli.png", "--quiet"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cli.returncode == 0 and cli.stderr == "", cli.stderr
    assert (tmp_path / "grid.png").read_bytes() == (tmp_path / "cli.png").read_bytes()


@pytest.mark.parametrize("module", ["trainer", "exporter", "trainer.classifier"])
def test_training_commands_say_which_extra_to_install(runtime_env, tmp_path, module):
    """The runtime install ships trainer/ and exporter/ without torch: one line naming the extra, exit 2."""
    result = subprocess.run([str(runtime_env / "bin" / "python"), "-m", module], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert_one_line_error(result)
    assert result.returncode == 2 and 'pip install "mnist-gen[train]"' in result.stderr
