"""The GPU path, checked on a CPU (issue #44): what a GPU user would hit, reproduced where it can be."""

from __future__ import annotations

import subprocess
import sys

from conftest import ENV, REPO


def test_export_leaves_out_a_cuda_provider_that_cannot_run(models, tmp_path, monkeypatch):
    """A GPU machine whose onnxruntime CUDA provider cannot load: the CPU check still guards, the file is written,
    and the report says CUDA was not checked instead of a traceback or a false failure."""
    import exporter.export as ex

    monkeypatch.setattr(ex, "available_providers", lambda: ["CPUExecutionProvider", "CUDAExecutionProvider"])
    report = ex.export(models[28, True][0], tmp_path / "g.onnx")
    assert report.path.is_file()
    assert max(report.parity["CPUExecutionProvider"].values()) <= ex.TOLERANCE["fp32"]
    assert report.unchecked == ["CUDAExecutionProvider"]  # no CUDA here; on a GPU it runs with TF32 off


def test_gpu_check_without_cuda_says_so_and_exits_77(tmp_path):
    """benchmarks/gpu_check.py on a machine without CUDA: one line saying so, the documented status, no work."""
    env = {**ENV, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 77, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], result.stderr
    assert not list(tmp_path.iterdir())  # nothing written
