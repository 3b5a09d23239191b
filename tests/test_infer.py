"""`mnist-gen` as users run it, on real onnxruntime and models exported by the real exporter."""

import signal

import numpy as np
import onnxruntime as ort
import pytest
from conftest import assert_one_line_error, python_m
from PIL import Image

from infer.files import make_grid, to_uint8
from infer.noise import latents


def mnist_gen(*args, cwd=None):
    return python_m("infer", *args, cwd=cwd)


def test_grid_is_deterministic_and_byte_identical(cond_onnx, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "64", "--seed", "3", "--out", str(out))
        assert result.returncode == 0, result.stderr
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.png"
    assert mnist_gen("infer", "--model", str(cond_onnx), "--n", "64", "--seed", "4", "--out", str(c)).returncode == 0
    assert c.read_bytes() != a.read_bytes()


def test_grid_matches_the_model_and_cycles_digits(cond_onnx, tmp_path):
    """Without --digit a conditional grid reads 0-9 along each row: pixels equal a direct onnxruntime run."""
    out = tmp_path / "grid.png"
    result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "20", "--seed", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "provider: CPUExecutionProvider" in result.stderr and "model:" in result.stderr
    z = latents(7, 0, 20, 100)  # the noise of images 0..19 of seed 7
    session = ort.InferenceSession(str(cond_onnx), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"z": z, "labels": np.arange(20, dtype=np.int64) % 10})[0]
    assert np.array_equal(np.asarray(Image.open(out)), make_grid(to_uint8(expected), 10))


def test_digit_list_and_out_dir(cond_onnx, tmp_path):
    out_dir = tmp_path / "digits"
    result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "30", "--digit", "3,7", "--seed", "1",
                       "--out-dir", str(out_dir), "--batch-size", "7")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out_dir.glob("*.png"))
    assert len(files) == 30 and not (tmp_path / "grid.png").exists()
    assert files[0] == "000000_digit3.png" and files[1] == "000001_digit7.png"
    # batch size does not change the images: the same seed gives the same pixels
    again = tmp_path / "again"
    mnist_gen("infer", "--model", str(cond_onnx), "--n", "30", "--digit", "3,7", "--seed", "1", "--out-dir", str(again))
    assert all((out_dir / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_single_digit_draws_that_digit(cond_onnx, tmp_path):
    out = tmp_path / "sevens.png"
    assert mnist_gen("infer", "--model", str(cond_onnx), "--n", "4", "--digit", "7", "--seed", "0",
                     "--nrow", "4", "--out", str(out)).returncode == 0
    z = latents(0, 0, 4, 100)
    session = ort.InferenceSession(str(cond_onnx), providers=["CPUExecutionProvider"])
    sevens = session.run(None, {"z": z, "labels": np.full(4, 7, np.int64)})[0]
    assert np.array_equal(np.asarray(Image.open(out)), make_grid(to_uint8(sevens), 4))


def test_seed_is_printed_when_not_given(uncond_onnx, tmp_path):
    out = tmp_path / "g.png"
    result = mnist_gen("infer", "--model", str(uncond_onnx), "--n", "4", "--scale", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "seed: " in result.stderr and "--seed" in result.stderr
    assert Image.open(tmp_path / "g.png").size == (3 * (2 * 30 + 2), 3 * (2 * 30 + 2))


def test_model_resolution_prefers_artifacts(cond_onnx, tmp_path):
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "generator.onnx").write_bytes(cond_onnx.read_bytes())
    result = mnist_gen("infer", "--n", "2", "--seed", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "artifacts/generator.onnx" in result.stderr and (tmp_path / "grid.png").is_file()


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_interpolate(cond_onnx, tmp_path, suffix):
    out = tmp_path / f"walk.{suffix}"
    result = mnist_gen("interpolate", "--model", str(cond_onnx), "--digit", "3", "--to", "8", "--steps", "6",
                       "--seed", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    if suffix == "gif":
        assert image.n_frames == 6 + 4  # there and back
    else:
        assert image.size[0] > 5 * image.size[1]  # a strip


def test_info(cond_onnx):
    result = mnist_gen("info", "--model", str(cond_onnx))
    assert result.returncode == 0, result.stderr
    for text in ["input:      z tensor(float) ['batch', 100]", "input:      labels tensor(int64)",
                 "meta:       num_classes = 10", "providers offered:", "running on: CPUExecutionProvider", "MB"]:
        assert text in result.stdout, result.stdout


def test_bench(uncond_onnx):
    result = mnist_gen("bench", "--model", str(uncond_onnx), "--batch-sizes", "1,8", "--seconds", "0.2",
                       "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "8"] and all(float(r[2]) > 0 for r in rows)


def test_version_and_help():
    from infer.images import MAX_SIDE

    assert mnist_gen("--version").stdout.startswith("mnist-gen ")
    result = mnist_gen("infer", "--help")
    assert result.returncode == 0 and "--digit" in result.stdout and "Examples" in result.stdout
    assert f"{MAX_SIDE}x{MAX_SIDE}" in " ".join(result.stdout.split())  # the size cap, as enforced


def test_walk_between_two_seeds_joins_their_first_images(cond_onnx):
    """A walk from seed a to seed b starts and ends on the first digit of each seed's grid."""
    from infer.generator import OnnxGenerator
    from infer.images import plan_grid, render_grid, render_walk

    generator = OnnxGenerator.load(cond_onnx, "cpu")
    frames = render_walk(generator, seed=5, steps=4, digit=3, to_seed=9)
    for seed, frame in [(5, frames[0]), (9, frames[-1])]:
        first = render_grid(generator, plan_grid(generator, 1, [3]), seed)[2:-2, 2:-2]  # one cell, no padding
        assert np.array_equal(frame, first)
    assert not np.array_equal(frames[1], frames[0])


def _bad(tmp_path, cond_onnx, uncond_onnx):
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("hello")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(cond_onnx.read_bytes()[:4000])
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    classifier = tmp_path / "classifier.onnx"
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "c",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 784])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), classifier)
    c = ["--model", str(cond_onnx)]
    return [
        (["infer", *c, "--n", "0"], "--n must be >= 1"),
        (["infer", *c, "--n", "-3"], "--n must be >= 1"),
        (["infer", *c, "--digit", "10"], "--digit 10"),
        (["infer", *c, "--digit", "x"], "--digit"),
        (["infer", "--model", str(uncond_onnx), "--digit", "3"], "unconditional"),
        (["infer", "--model", str(tmp_path / "missing.onnx")], "no such file"),
        (["infer", "--model", str(not_onnx)], "not a valid ONNX model"),
        (["infer", "--model", str(truncated)], "not a valid ONNX model"),
        (["infer", "--model", str(classifier)], "not an mnist-gen generator"),
        (["infer", *c, "--out", str(blocker / "g.png")], "cannot create"),
        (["infer", *c, "--n", "20000"], "at most"),
        (["infer", *c, "--n", "64", "--scale", "1000"], "over the cap of 67,108,864 (8192x8192)"),
        (["infer", *c, "--n", "2", "--scale", "1000", "--out-dir", str(blocker.parent / "big")], "over the cap"),
        (["interpolate", *c, "--steps", "300", "--scale", "100"], "over the cap"),
        (["infer", *c, "--provider", "cuda"], "provider cuda"),
        (["infer", *c, "--provider", "tpu"], "provider"),
        (["interpolate", *c, "--out", str(tmp_path / "walk.txt")], ".png"),
        (["interpolate", *c, "--digit", "11"], "--digit 11"),
        # issue 42: unwritable places are refused before any image is drawn
        (["infer", *c, "--out", "/proc/x.png"], "--out /proc/x.png: cannot write"),
        (["infer", *c, "--out", "/sys/x.png"], "--out /sys/x.png: cannot write"),
        (["interpolate", *c, "--out", "/proc/x.gif"], "--out /proc/x.gif: cannot write"),
        (["infer", *c, "--out", str(tmp_path / "x.txt")], "must end in .png, .jpg, .jpeg, .webp"),
        # issue 42: one `error:` line for what Typer used to box, and the option each message names
        (["infer", *c, "--n", "nan"], "Invalid value for '--n'"),
        (["infer", *c, "--n", "1e3"], "Invalid value for '--n'"),
        (["serve", *c, "--port", "abc"], "Invalid value for '--port'"),
        (["infer", *c, "--bogus"], "No such option: --bogus"),
        (["bench", *c, "--batch-sizes", "0"], "--batch-sizes must each be >= 1"),
        (["infer", *c, "--digit", "1,,2"], "--digit '1,,2'"),
        (["infer", *c, "--digit", "\uff17"], "--digit '\uff17'"),  # a full-width 7 is not a digit we take
        (["infer", *c, "--digit", "-1"], "--digit -1: digits must be in 0..9"),
        (["interpolate", *c, "--to", "7"], "--to needs --digit"),
        (["infer", *c, "--seed", str(2**64)], "--seed must be an integer in 0..18446744073709551615"),
        (["score", *c, "--n", "10000000"], "at most 100,000 images"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(cond_onnx, uncond_onnx, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for args, message in _bad(tmp_path, cond_onnx, uncond_onnx):
        if "--provider" in args and args[args.index("--provider") + 1] == "cuda" and "CUDAExecutionProvider" in \
                ort.get_available_providers() and _cuda_works(cond_onnx):
            continue
        result = mnist_gen(*args, cwd=work)
        assert_one_line_error(result)
        assert message in result.stderr, (args, result.stderr)
    assert not list(work.iterdir()), "a failed command left files behind"


def test_unwritable_output_fails_before_drawing(cond_onnx):
    """--out /proc/x.png used to draw every image, then end in a 51-line traceback: now one line, at once."""
    import time

    t0 = time.perf_counter()
    result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "10000", "--out", "/proc/x.png")
    assert_one_line_error(result)
    assert "model:" not in result.stderr  # refused before the model was even loaded
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("suffix, fmt", [("jpg", "JPEG"), ("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_out_writes_the_format_its_extension_names(cond_onnx, tmp_path, suffix, fmt):
    out = tmp_path / f"grid.{suffix}"
    result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "10", "--seed", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.format == fmt and image.size == (302, 32)
    if fmt in ("WEBP", "PNG"):  # lossless: the very pixels of the PNG
        png = tmp_path / "ref.png"
        mnist_gen("infer", "--model", str(cond_onnx), "--n", "10", "--seed", "0", "--out", str(png))
        grey = Image.open(out).convert("L")  # WebP has no grey mode: the same value in three channels
        assert np.array_equal(np.asarray(grey), np.asarray(Image.open(png)))


def test_quiet_prints_only_results(cond_onnx, tmp_path):
    result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "4", "--out", str(tmp_path / "g.png"), "--quiet")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("wrote ")


def test_start_draws_one_image_of_a_grid_alone(cond_onnx, tmp_path):
    """Image i of a seed is the same alone (--start i --n 1) as inside the grid: what format=json reports."""
    whole, alone = tmp_path / "whole", tmp_path / "alone"
    assert mnist_gen("infer", "--model", str(cond_onnx), "--n", "12", "--seed", "5", "--out-dir", str(whole),
                     "--batch-size", "5").returncode == 0
    result = mnist_gen("infer", "--model", str(cond_onnx), "--n", "1", "--seed", "5", "--start", "7",
                       "--out-dir", str(alone))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in alone.iterdir()] == ["000007_digit7.png"]
    assert (alone / "000007_digit7.png").read_bytes() == (whole / "000007_digit7.png").read_bytes()


def test_interpolate_to_seed_and_large_seeds(cond_onnx, tmp_path):
    out = tmp_path / "walk.png"
    result = mnist_gen("interpolate", "--model", str(cond_onnx), "--digit", "2", "--seed", str(2**64 - 1),
                       "--to-seed", str(2**63 + 5), "--steps", "3", "--scale", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (3 * 30 + 2, 32)


@pytest.mark.parametrize("stop, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_killed_out_dir_leaves_no_temporary_files(cond_onnx, tmp_path, stop, code, word):
    """SIGTERM or Ctrl-C while --out-dir is written: one line, the conventional exit code, no .tmp file left;
    and a later run removes what a SIGKILLed one left."""
    import subprocess
    import sys
    import time

    from conftest import ENV, REPO

    out = tmp_path / "digits"
    process = subprocess.Popen([sys.executable, "-m", "infer", "infer", "--model", str(cond_onnx), "--n", "10000",
                                "--out-dir", str(out), "--seed", "0", "--batch-size", "64"], cwd=REPO, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # as from a terminal: a runner started in the background ignores SIGINT, and
                               # mnist-gen keeps an inherited "ignore" (nohup, &), so the test restores it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("*.png"))) < 50:
        time.sleep(0.05)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines()[-1].startswith(word) and "Traceback" not in stderr
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    (out / ".000001_digit1.png.abcd1234.tmp").write_bytes(b"left by a SIGKILLed run")
    assert mnist_gen("infer", "--model", str(cond_onnx), "--n", "2", "--seed", "0", "--out-dir",
                     str(out)).returncode == 0
    assert not list(out.glob(".*.tmp"))


def test_a_model_that_fails_at_its_first_run_is_refused_at_load(tmp_path, cond_onnx):
    """onnxruntime may accept a session whose first run fails (CUDA without cuDNN does): a trial run catches it
    at load, in one line. Reproduced on CPU with a graph that loads but cannot run."""
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 7, 7])  # 100 values fit no [*, 1, 7, 7]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["z", "shape"], ["images"])], "g",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 100])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 7, 7])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    for key, value in {"latent_dim": "100", "image_size": "7", "num_classes": "0"}.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "fails.onnx"
    onnx.save(model, path)
    result = mnist_gen("infer", "--model", str(path), "--n", "2", "--out", str(tmp_path / "g.png"))
    assert_one_line_error(result)
    assert "fails on its first run" in result.stderr and not (tmp_path / "g.png").exists()
    # The function that accepts or refuses a CUDA session, given CPU here: refused with one line of why.
    from infer.generator import session_options, working_session

    session, why = working_session(path.read_bytes(), session_options(None), ["CPUExecutionProvider"])
    assert session is None and why and "\n" not in why
    session, why = working_session(cond_onnx.read_bytes(), session_options(None), ["CPUExecutionProvider"])
    assert session is not None and why == ""


def test_onnxruntime_banners_stay_off_stdout():
    """What onnxruntime or preload_dlls print while a CUDA session is tried goes to stderr: stdout is results."""
    import subprocess
    import sys

    from conftest import ENV, REPO

    code = ("import os; from infer.generator import output_to_stderr\n"
            "with output_to_stderr():\n    os.write(1, b'C banner\\n'); print('python banner')\nprint('result')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ENV)
    assert result.stdout == "result\n" and "C banner" in result.stderr and "python banner" in result.stderr


def _cuda_works(model) -> bool:
    from infer.generator import OnnxGenerator

    try:
        return OnnxGenerator.load(model, "cuda").provider == "CUDAExecutionProvider"
    except Exception:  # noqa: BLE001
        return False


def test_an_interrupt_right_after_the_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM can land the moment atomic_path's temporary file exists, before anything else runs (with
    mkstemp, before its name was known: a .tmp was once left behind under SIGTERM). The file is still removed."""
    import os

    from infer.files import atomic_path

    real_open = os.open

    def open_then_interrupted(path, flags, mode=0o777, **kwargs):
        os.close(real_open(path, flags, mode, **kwargs))
        raise KeyboardInterrupt  # as the signal handler raises it, right after the file is created

    with pytest.raises(KeyboardInterrupt):
        with monkeypatch.context() as m:
            m.setattr(os, "open", open_then_interrupted)
            with atomic_path(tmp_path / "out.png"):
                pass
    assert list(tmp_path.iterdir()) == []
