"""The Python API (`import mnist_gen`): the CLI's pixels, image i of a seed drawn alone, catchable errors."""

import numpy as np
import pytest
from conftest import python_m
from PIL import Image

import mnist_gen


@pytest.fixture(scope="module")
def generator(cond_onnx):
    return mnist_gen.load(cond_onnx, provider="cpu")


def test_grid_is_the_file_mnist_gen_infer_writes(generator, cond_onnx, tmp_path):
    cli = tmp_path / "cli.png"
    result = python_m("infer", "infer", "--model", str(cond_onnx), "--n", "20", "--seed", "4", "--scale", "2",
                      "--out", str(cli))
    assert result.returncode == 0, result.stderr
    api = tmp_path / "api.png"
    generator.grid(20, seed=4, scale=2).save(api)
    assert api.read_bytes() == cli.read_bytes()


def test_generate_arrays_and_images(generator, cond_onnx, tmp_path):
    sevens = generator.generate(6, digits=7, seed=2)
    assert sevens.shape == (6, 28, 28) and sevens.dtype == np.uint8
    cycled = generator.generate(4, digits=[3, 8], seed=2)
    assert not np.array_equal(cycled[0], cycled[1])
    out_dir = tmp_path / "cli"
    python_m("infer", "infer", "--model", str(cond_onnx), "--n", "6", "--digit", "7", "--seed", "2", "--scale", "3",
             "--out-dir", str(out_dir))
    for i, image in enumerate(generator.images(6, digits=7, seed=2, scale=3)):
        assert isinstance(image, Image.Image)
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(out_dir / f"{i:06d}_digit7.png")))


def test_image_i_of_a_seed_is_the_same_alone(generator):
    whole = generator.generate(40, seed=2**64 - 1)
    assert np.array_equal(generator.generate(1, seed=2**64 - 1, start=33)[0], whole[33])
    batched = np.concatenate([images for _, images in generator.batches(40, seed=2**64 - 1, batch_size=7)])
    assert np.array_equal(batched, whole)
    # z itself: the one noise function every surface uses
    assert np.array_equal(mnist_gen.latents(9, 5, 3, 100), mnist_gen.latents(9, 0, 8, 100)[5:])


def test_walk(generator):
    frames = generator.walk(seed=1, steps=5, digit=2, to=6)
    assert len(frames) == 5 and frames[0].size == (28, 28) and frames[0].tobytes() != frames[-1].tobytes()
    strip = generator.walk(seed=1, steps=5, digit=2, to=6, strip=True)
    assert strip.size == (5 * 30 + 2, 32)


@pytest.mark.parametrize("call, kind, words", [
    (lambda g: g.generate(0), ValueError, "n must be an integer >= 1"),
    (lambda g: g.generate(2, digits=10), ValueError, "digits 10: digits must be in 0..9"),
    (lambda g: g.generate(2, digits=-1), ValueError, "digits -1"),
    (lambda g: g.generate(2, digits=[]), ValueError, "at least one digit"),
    (lambda g: g.generate(2, digits="cat"), ValueError, "classes are 0, 1"),
    (lambda g: g.generate(2, seed=2**64), ValueError, "seed must be an integer in 0..18446744073709551615"),
    (lambda g: g.generate(2, seed=-1), ValueError, "seed must be"),
    (lambda g: g.grid(64, scale=1000), ValueError, "over the cap"),
    (lambda g: g.walk(steps=1), ValueError, "steps must be an integer >= 2"),
    (lambda g: g.walk(to=3), ValueError, "to needs digit"),
    (lambda g: g.generate(1, start=2**63), ValueError, f"start must be an integer in 0..{2**63 - 1}"),
])
def test_errors_are_standard_types_in_the_api_own_words(generator, call, kind, words):
    with pytest.raises(kind) as caught:
        call(generator)
    assert words in str(caught.value) and "--" not in str(caught.value)


def test_digit_text_as_the_cli_and_the_query_give_it():
    from infer.api import parse_digits

    assert parse_digits("0, 1,2") == [0, 1, 2] and parse_digits("-1") == [-1] and parse_digits("cat,7") == ["cat", 7]
    for text in ["", "1,,2", ","]:
        with pytest.raises(ValueError):
            parse_digits(text)
    assert parse_digits("\uff17") == ["\uff17"] and parse_digits("--1") == ["--1"]  # names: refused by the model


def test_file_errors_are_oserrors(tmp_path):
    with pytest.raises(OSError, match="no such file"):
        mnist_gen.load(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(OSError, match="not a valid ONNX model"):
        mnist_gen.load(bad)
    with pytest.raises(ValueError, match="provider must be auto, cpu or cuda"):
        mnist_gen.load(provider="tpu")


def test_named_classes_and_colour(rgb_onnx):
    generator = mnist_gen.load(rgb_onnx, provider="cpu")
    foxes = generator.generate(3, digits="fox", seed=0)
    assert foxes.shape == (3, 32, 32, 3)
    assert np.array_equal(foxes, generator.generate(3, digits=2, seed=0))
