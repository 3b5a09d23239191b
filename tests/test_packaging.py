"""The install resolves on every platform: onnxruntime-gpu where its wheels exist, onnxruntime elsewhere."""

import pytest
import tomllib
from conftest import REPO
from packaging.requirements import Requirement

PLATFORMS = {  # (sys_platform, platform_machine) -> the onnxruntime build pip must pick
    ("linux", "x86_64"): "onnxruntime-gpu",
    ("win32", "AMD64"): "onnxruntime-gpu",
    ("linux", "aarch64"): "onnxruntime",
    ("darwin", "arm64"): "onnxruntime",
    ("darwin", "x86_64"): "onnxruntime",
    ("win32", "ARM64"): "onnxruntime",
}


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: "-".join(p))
def test_exactly_one_onnxruntime_build_per_platform(platform):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    environment = {"sys_platform": platform[0], "platform_machine": platform[1], "python_version": "3.11"}
    chosen = [r.name for r in map(Requirement, project["dependencies"])
              if r.name.startswith("onnxruntime") and r.marker.evaluate(environment)]
    assert chosen == [PLATFORMS[platform]]
    assert not any("torch" in d for d in project["dependencies"])  # the base install stays torch-free


def test_the_readmes_cpu_only_recipe_installs_what_the_base_install_needs():
    """README's `pip install --no-deps . && pip install ...` must name every base dependency, with the CPU
    onnxruntime for the GPU one, or a user following it gets an import error."""
    import re

    readme = (REPO / "README.md").read_text()
    match = re.search(r"`pip install --no-deps \. && pip install ([^`]+)`", readme)
    assert match, "README's CPU-only install recipe not found"
    recipe = {Requirement(name).name for name in match.group(1).split()}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {Requirement(d).name.replace("onnxruntime-gpu", "onnxruntime") for d in project["dependencies"]}
    assert recipe == {name.lower() for name in needed}
