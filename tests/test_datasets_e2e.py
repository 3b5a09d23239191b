"""Other data end to end, as a user runs it: a colour image folder -> trainer -> exporter -> ONNX with class names."""

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_one_line_error, in_process, python_m, write_cifar
from PIL import Image

from trainer.cli import main as trainer_main

COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}
# Narrow models on the CPU: the width changes nothing these tests look at (files, resume, names).
NARROW = ["--device", "cpu", "--g-width", "8", "--d-width", "8"]
QUICK = ["--dataset", "folder", "--image-size", "32", "--batch-size", "32", "--log-every", "2", "--eval-every", "0",
         "--precision", "fp32", *NARROW]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny colour data set: a square of one colour per class on a dark, noisy background."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(40):
            image = rng.integers(0, 30, (40, 40, 3)).astype(np.uint8)
            x, y = rng.integers(4, 24, 2)
            image[y : y + 12, x : x + 12] = colour
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def _weights(path):
    checkpoint = torch.load(path, weights_only=True)
    parts = ("generator", "discriminator")
    return {f"{part}.{k}": v for part in parts for k, v in checkpoint[part]["state_dict"].items()}


def test_colour_folder_trains_resumes_exactly_and_exports_with_class_names(shapes, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [*QUICK, "--data-dir", str(shapes)]
    result = python_m("trainer", *common, "--epochs", "2", "--out", str(straight))
    assert result.returncode == 0, result.stderr
    assert python_m("trainer", *common, "--epochs", "1", "--out", str(split)).returncode == 0
    assert python_m("trainer", "--resume", "--epochs", "2", "--device", "cpu", "--out", str(split)).returncode == 0
    a, b = _weights(straight / "checkpoints/last.pt"), _weights(split / "checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    saved = torch.load(straight / "generator.pth", weights_only=True)["config"]
    assert saved["channels"] == 3 and saved["class_names"] == ["blue", "green", "red"] and saved["image_size"] == 32
    sample = np.asarray(Image.open(straight / "samples" / "epoch_002.png"))
    assert sample.ndim == 3 and sample.shape[2] == 3  # written in colour
    assert json.loads((straight / "config.json").read_text())["config"]["channels"] == 3

    exported = python_m("exporter", str(straight / "generator.pth"))
    assert exported.returncode == 0, exported.stderr
    meta = {p.key: p.value for p in onnx.load(straight / "generator.onnx").metadata_props}
    assert meta["channels"] == "3" and json.loads(meta["class_names"]) == ["blue", "green", "red"]

    # ...and from ONNX to `mnist-gen infer --class`: the name picks the label it was trained as.
    grids = {}
    for option in (["--class", "red"], ["--digit", "2"]):
        out = tmp_path / f"{option[0][2:]}.png"
        drawn = python_m("infer", "infer", "--model", str(straight / "generator.onnx"), *option, "--n", "4",
                         "--seed", "1", "--provider", "cpu", "--out", str(out))
        assert drawn.returncode == 0, drawn.stderr
        grids[option[0]] = out.read_bytes()
    assert grids["--class"] == grids["--digit"]
    unknown = python_m("infer", "infer", "--model", str(straight / "generator.onnx"), "--class", "purple",
                       "--provider", "cpu")
    assert_one_line_error(unknown)
    assert "blue, green, red" in unknown.stderr


def test_cifar10_binary_trains(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-bin")
    result = python_m("trainer", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--batch-size", "50",
                      "--epochs", "1", "--eval-every", "0", *NARROW, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    config = torch.load(tmp_path / "run" / "generator.pth", weights_only=True)["config"]
    assert config["image_size"] == 32 and config["channels"] == 3 and config["class_names"][0] == "airplane"


def test_bad_data_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--dataset", "folder", "--data-dir", str(tmp_path / "empty")], "no PNG or JPEG images"),
        (["--dataset", "imagenet"], "--dataset must be one of"),
        (["--dataset", "fashion-mnist"], "--dataset fashion-mnist needs --data-dir"),
        (["--channels", "2"], "--channels"),
    ]
    for i, (args, message) in enumerate(cases):  # the first through `python -m trainer`, the rest in-process
        args = [*args, "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out")]
        result = python_m("trainer", *args) if i == 0 else in_process(trainer_main, *args)
        assert_one_line_error(result)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
