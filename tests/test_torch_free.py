"""The runtime install (`pip install mnist-gen`, no extras) has no torch, and `mnist-gen` works there."""

import subprocess
import sys
import venv

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory):
    """A real virtual environment with only the base install of this project."""
    root = tmp_path_factory.mktemp("runtime-venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr
    return root


def test_base_install_has_no_torch(runtime_env):
    python = runtime_env / "bin" / "python"
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
    code = ("import sys, infer.cli, infer.generator, infer.files, infer.latent; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trainer', 'exporter'}); print(bad)")
    result = subprocess.run([str(runtime_env / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
