"""`python -m exporter --int8`: quantized from a .pth and from an .onnx, the quality gate, metadata, bad input."""

import json

import onnx
import pytest
from conftest import assert_one_line_error, in_process, python_m

from exporter.cli import main as exporter_main
from exporter.export import export
from exporter.quantize import MAX_ACCURACY_DROP, MAX_FID_RISE, quantize
from infer.errors import UserError
from infer.generator import BUNDLED_MODEL


def metadata(path) -> dict:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_bundled_fp32_onnx_quantizes_and_passes_the_gate(tmp_path):
    """The real trained generator: a quarter of the file, the digits score the same."""
    out = tmp_path / "g8.onnx"
    result = python_m("exporter", str(BUNDLED_MODEL), "--int8", "--calibration", "256", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "fp32: FID" in result.stdout and "int8: FID" in result.stdout, result.stdout
    assert out.stat().st_size < 0.3 * BUNDLED_MODEL.stat().st_size
    meta = metadata(out)
    assert meta["precision"] == "int8" and meta["calibration_size"] == "256"
    assert meta["calibration_method"] == "minmax" and meta["calibration_seed"] == "0"
    assert meta["latent_dim"] == "100" and meta["num_classes"] == "10"  # the fp32 model's metadata carried over
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Measured apart from the gate: `mnist-gen score` on both files, on latents the gate never drew (seed 1).
    fp32, int8 = (_score(path) for path in (BUNDLED_MODEL, out))
    assert int8["fid"] - fp32["fid"] <= MAX_FID_RISE
    assert int8["conditional_accuracy"] >= fp32["conditional_accuracy"] - MAX_ACCURACY_DROP
    # The same calibration gives the same graph (gate off: only its figures in the metadata would differ).
    again = quantize(BUNDLED_MODEL, tmp_path / "again.onnx", calibration=256, check=False).path
    assert onnx.load(again).graph == onnx.load(out).graph


def _score(onnx_path) -> dict:
    result = python_m("infer", "score", "--model", str(onnx_path), "--n", "2000", "--seed", "1", "--json",
                      "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gate_refuses_a_badly_calibrated_model_and_writes_nothing(tmp_path):
    """Calibrated on latents 10x wider than N(0, 1): activation ranges far too coarse, digits degrade."""
    out = tmp_path / "bad.onnx"
    with pytest.raises(UserError, match="int8 model refused: .*nothing written"):
        quantize(BUNDLED_MODEL, out, calibration=256, latent_std=10.0)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["mnist", "rgb"])
def test_int8_from_a_pth(models, rgb_onnx, tmp_path, kind):
    """The .pth goes through the fp32 export (with its parity check) first; data the MNIST scorer cannot judge
    (here a colour model) gets the pixel bound."""
    pth = models[28, True][0] if kind == "mnist" else rgb_onnx.with_suffix(".pth")
    size = 28 if kind == "mnist" else 32
    out = tmp_path / "g8.onnx"
    result = python_m("exporter", str(pth), "--int8", "--calibration", "64", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "parity vs PyTorch on CPUExecutionProvider" in result.stdout
    assert ("pixel-statistics bound" in result.stdout) == (kind == "rgb"), result.stdout
    assert metadata(out)["precision"] == "int8" and metadata(out)["image_size"] == str(size)
    assert not (tmp_path / "generator.onnx").exists()  # only the file asked for
    grid = tmp_path / "grid.png"
    result = python_m("infer", "infer", "--model", str(out), "--n", "10", "--seed", "0", "--out", str(grid),
                      "--provider", "cpu")
    assert result.returncode == 0 and grid.is_file(), result.stderr


def test_default_output_is_beside_the_input(cond_onnx, tmp_path):
    src = tmp_path / "generator.onnx"
    src.write_bytes(cond_onnx.read_bytes())
    result = python_m("exporter", str(src), "--int8", "--calibration", "32", "--no-check")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "generator.int8.onnx").is_file() and "quality gate skipped" in result.stdout


def test_info_and_bench_on_int8(int8_onnx, cond_onnx):
    result = python_m("infer", "info", "--model", str(int8_onnx), "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    for text in ["precision:  int8", "meta:       calibration_size = 64", "meta:       calibration_method = minmax"]:
        assert text in result.stdout, result.stdout
    result = python_m("infer", "bench", "--model", str(cond_onnx), "--compare", str(int8_onnx),
                      "--batch-sizes", "1,8", "--seconds", "0.2", "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    assert int8_onnx.name in result.stdout.splitlines()[0]
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "8"] and all(float(r[2]) > 0 and float(r[4]) > 0 for r in rows)


def test_cpu_default_is_the_bundled_int8_and_fp32_on_request(tmp_path):
    result = python_m("infer", "info", "--provider", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "assets/generator.int8.onnx" in result.stdout and "precision:  int8" in result.stdout
    result = python_m("infer", "info", "--provider", "cpu", "--model", "fp32", cwd=tmp_path)
    assert "assets/generator.onnx" in result.stdout and "precision:  fp32" in result.stdout, result.stdout


def test_bad_input_is_one_line_and_leaves_no_file(models, int8_onnx, tmp_path):
    pth, cond_onnx = models[28, True][0], models[28, True][1]
    classifier = BUNDLED_MODEL.parent / "classifier.onnx"
    export(pth, tmp_path / "fp16" / "g16.onnx", fp16=True)
    out = tmp_path / "out"
    cases = [
        ([str(cond_onnx), "--int8", "--calibration", "0"], "--calibration 0"),
        ([str(pth), "--int8", "--calibration", "-5"], "--calibration -5"),
        ([str(cond_onnx), "--int8", "--calibration", "10000000"], "--calibration 10000000"),
        ([str(pth), "--int8", "--fp16"], "--int8 and --fp16"),
        ([str(classifier), "--int8"], "not an mnist-gen generator"),
        ([str(int8_onnx), "--int8"], "already quantized"),
        ([str(tmp_path / "fp16" / "g16.onnx"), "--int8"], "fp16"),
        ([str(tmp_path / "missing.onnx"), "--int8"], "no such file"),
        ([str(cond_onnx)], "add --int8"),
        ([str(pth), "--calibration", "64"], "--int8 only"),
    ]
    for i, (args, message) in enumerate(cases):  # the first through `python -m exporter`, the rest in-process
        args = [*args, "--out", str(out / "g8.onnx")]
        result = python_m("exporter", *args) if i == 0 else in_process(exporter_main, *args)
        assert_one_line_error(result)
        assert message in result.stderr, (args, result.stderr)
    assert not out.exists()
    before = cond_onnx.read_bytes()
    assert_one_line_error(in_process(exporter_main, str(cond_onnx), "--int8", "--out", str(cond_onnx)))
    assert cond_onnx.read_bytes() == before


def test_pixel_bound_refuses_a_badly_calibrated_colour_model(rgb_onnx, tmp_path):
    """The MNIST scorer cannot judge colour images, so the pixel-statistics bound is the gate there; it can say no."""
    with pytest.raises(UserError, match=r"mean \|int8 - fp32\| per pixel"):
        quantize(rgb_onnx, tmp_path / "bad.onnx", calibration=64, latent_std=30.0)
    assert not (tmp_path / "bad.onnx").exists()
