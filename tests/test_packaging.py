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
