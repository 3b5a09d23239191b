"""`python -m exporter`: parity, one self-contained file, metadata, fp16, pytorch/examples input, bad input."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_one_line_error, in_process, python_m, save_random_generator
from onnx.reference import ReferenceEvaluator
from torch import nn

from exporter.cli import main as exporter_main
from exporter.export import PARITY_BATCHES, export, sample_inputs
from exporter.subpixel import SubPixelGenerator
from trainer.model import Generator, ModelConfig, build_models

ALL = [(28, True), (28, False), (64, True), (64, False)]


def _max_difference_on_fresh_inputs(pth, onnx_path, batches=(1, 5, 130)) -> float:
    """onnxruntime against the trained G in PyTorch, on inputs the exporter's own check never saw."""
    from trainer.checkpoint import generator_from_file, load_file

    generator, _ = generator_from_file(load_file(pth), pth)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng, worst = np.random.default_rng(12345), 0.0
    for batch in batches:
        z = rng.standard_normal((batch, 100), dtype=np.float32) * 1.5
        feeds = {"z": z}
        if generator.cfg.conditional:
            feeds["labels"] = rng.integers(0, 10, batch)
        with torch.no_grad():
            expected = generator(torch.from_numpy(z), torch.from_numpy(feeds["labels"]) if "labels" in feeds else None)
        (images,) = session.run(["images"], feeds)
        assert images.shape == tuple(expected.shape)
        worst = max(worst, float(np.abs(images - expected.numpy()).max()))
    return worst


@pytest.mark.parametrize("key", ALL)
def test_onnx_matches_pytorch_on_fresh_inputs(models, key):
    pth, onnx_path, report = models[key]
    assert _max_difference_on_fresh_inputs(pth, onnx_path) <= 1e-4
    assert sorted(report.parity["CPUExecutionProvider"]) == sorted(PARITY_BATCHES)  # and the exporter checked these


@pytest.fixture(scope="module")
def fp16_report(models, tmp_path_factory):
    return export(models[28, True][0], tmp_path_factory.mktemp("fp16") / "g16.onnx", fp16=True)


def _score(onnx_path) -> dict:
    result = python_m("infer", "score", "--model", str(onnx_path), "--n", "500", "--seed", "3", "--json",
                      "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fp16_onnx_draws_what_the_fp32_one_draws(models, fp16_report):
    """Measured apart from the exporter's own parity bound: fresh latents, and `mnist-gen score` on both files."""
    pth, fp32_path, _ = models[28, True]
    assert _max_difference_on_fresh_inputs(pth, fp16_report.path) > 0  # really computed in float16
    fp32, fp16 = _score(fp32_path), _score(fp16_report.path)
    assert fp16["fid"] == pytest.approx(fp32["fid"], rel=1e-3)
    assert fp16["diversity"] == pytest.approx(fp32["diversity"], rel=1e-2)
    assert fp16["conditional_accuracy"] == pytest.approx(fp32["conditional_accuracy"], abs=0.01)
    assert np.abs(np.subtract(fp16["digit_share"], fp32["digit_share"])).max() <= 0.01


def test_exporting_in_fp16_leaves_the_callers_generator_alone():
    from exporter.export import ExportableGenerator

    generator = build_models(ModelConfig(g_width=8))[0].train()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    ExportableGenerator(generator, fp16=True)
    after = generator.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert generator.training


@pytest.mark.parametrize("key", ALL)
def test_sub_pixel_form_is_the_same_generator(key):
    """The rewrite the exporter ships, on trained-looking BatchNorm statistics and output bias."""
    size, conditional = key
    torch.manual_seed(0)
    generator = build_models(ModelConfig(image_size=size, num_classes=10 if conditional else 0, g_width=8))[0]
    with torch.no_grad():
        for bn in (m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0), bn.weight.normal_(1, 0.2), bn.bias.normal_()
        if generator.parts.output.bias is not None:
            generator.parts.output.bias.normal_()
    generator.eval()
    z, labels = torch.randn(7, 100), (torch.arange(7) if conditional else None)
    with torch.no_grad():
        assert (SubPixelGenerator(generator)(z, labels) - generator(z, labels)).abs().max() < 1e-5


@pytest.mark.parametrize("key", ALL)
def test_one_file_checked_graph_and_metadata(models, key):
    pth, onnx_path, _ = models[key]
    size, conditional = key
    assert not list(onnx_path.parent.glob("*.data")), "weights must live inside the .onnx file"
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["latent_dim"] == "100" and meta["image_size"] == str(size)
    assert meta["num_classes"] == ("10" if conditional else "0")
    assert meta["output_range"] == "-1,1" and meta["training_epochs"] == "1"
    assert meta["architecture"] == f"dcgan-{size}-{'conditional' if conditional else 'unconditional'}"
    import hashlib

    assert meta["source_sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == (["z", "labels"] if conditional else ["z"])
    assert inputs["z"].type == "tensor(float)" and isinstance(inputs["z"].shape[0], str)  # dynamic batch
    if conditional:
        assert inputs["labels"].type == "tensor(int64)"
    (output,) = session.get_outputs()
    assert output.name == "images" and output.shape[1:] == [1, size, size]


def test_exported_model_runs_the_same_in_a_second_runtime(models):
    _, onnx_path, _ = models[28, True]
    inputs = sample_inputs(ModelConfig(), 5)
    (ort_images,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, inputs)
    (ref_images,) = ReferenceEvaluator(str(onnx_path)).run(None, inputs)
    assert np.abs(ort_images - ref_images).max() <= 1e-4


def test_out_of_range_labels_never_make_a_quiet_image(cond_onnx):
    session = ort.InferenceSession(str(cond_onnx), providers=["CPUExecutionProvider"])
    z = np.zeros((1, 100), np.float32)
    for bad in (10, -1, -10):
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own Fail/RuntimeException types
            session.run(None, {"z": z, "labels": np.array([bad], np.int64)})


def test_fp16_export_is_smaller_and_takes_float32(models, fp16_report):
    report, fp32_path = fp16_report, models[28, True][1]
    assert report.metadata["precision"] == "fp16"
    assert report.path.stat().st_size < 0.6 * fp32_path.stat().st_size
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"


class ExamplesGenerator(nn.Module):
    """pytorch/examples dcgan `Generator`, verbatim in structure (nz=100, ngf=64, nc=1)."""

    def __init__(self, nz=100, ngf=64, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


@pytest.mark.parametrize("nc", [1, 3], ids=["grey", "rgb"])
def test_pytorch_examples_generator_exports_and_matches(tmp_path, nc):
    torch.manual_seed(0)
    net = ExamplesGenerator(ngf=16, nc=nc).eval()
    torch.save(net.state_dict(), tmp_path / "netG_epoch_24.pth")
    # The grey one as users run it; the colour one in-process (the same main, no interpreter start).
    args = [str(tmp_path / "netG_epoch_24.pth")]
    result = python_m("exporter", *args) if nc == 1 else in_process(exporter_main, *args)
    assert result.returncode == 0, result.stderr
    assert "parity vs PyTorch on CPUExecutionProvider" in result.stdout
    onnx_path = tmp_path / "generator.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((3, 100), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(z)[:, :, None, None]).numpy()
    assert np.abs(session.run(None, {"z": z})[0] - expected).max() <= 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["source"] == "pytorch/examples dcgan" and meta["num_classes"] == "0" and meta["image_size"] == "64"
    assert meta["channels"] == str(nc)


def test_cli_reports_path_size_opset_and_parity(models, tmp_path):
    pth = models[28, True][0]
    result = python_m("exporter", str(pth), "--out", str(tmp_path / "sub" / "m.onnx"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sub" / "m.onnx").is_file()
    for text in ["m.onnx", "MB", "opset 18", "inputs: z, labels", "outputs: images", "batch 257"]:
        assert text in result.stdout, result.stdout


def test_a_training_checkpoint_exports_its_averaged_generator(tmp_path):
    result = python_m("trainer", "--limit", "128", "--batch-size", "64", "--epochs", "1", "--eval-every", "0",
                      "--g-width", "8", "--d-width", "8", "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    last = tmp_path / "checkpoints" / "last.pt"
    result = python_m("exporter", str(last), "--out", str(tmp_path / "last.onnx"))
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["generator_ema"], "the default run keeps a weight average"
    z = np.random.default_rng(7).standard_normal((6, 100), dtype=np.float32)
    labels = np.arange(6, dtype=np.int64)
    session = ort.InferenceSession(str(tmp_path / "last.onnx"), providers=["CPUExecutionProvider"])
    (exported,) = session.run(["images"], {"z": z, "labels": labels})
    drawn = {}
    for part in ("generator_ema", "generator"):
        generator = Generator(ModelConfig.from_dict(checkpoint[part]["config"]))
        generator.load_state_dict(checkpoint[part]["state_dict"])
        with torch.no_grad():
            drawn[part] = generator.eval()(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
    assert np.abs(exported - drawn["generator_ema"]).max() <= 1e-4  # the averaged G...
    assert np.abs(exported - drawn["generator"]).max() > 1e-2  # ...not the live one


def _bad_inputs(tmp_path, models):
    pth = models[28, True][0]
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pth.read_bytes()[:3000])
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    discriminator = tmp_path / "discriminator.pth"
    from trainer.checkpoint import discriminator_file, save_atomic
    from trainer.model import Discriminator, ModelConfig

    save_atomic(discriminator_file(Discriminator(ModelConfig(d_width=8)), 1), discriminator)
    classifier = tmp_path / "classifier.pth"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).state_dict(), classifier)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    return [
        ([str(tmp_path / "missing.pth")], "no such file"),
        ([str(truncated)], "not a readable PyTorch file"),
        ([str(text)], "not a readable PyTorch file"),
        ([str(discriminator)], "discriminator"),
        ([str(classifier)], "not a generator"),
        ([str(pth), "--out", str(blocker / "g.onnx")], "cannot write"),
        ([str(pth), "--opset", "12"], "opset"),
    ]


def test_bad_input_is_one_line_and_leaves_no_file(models, tmp_path):
    cases = _bad_inputs(tmp_path, models)
    for i, (args, message) in enumerate(cases):  # the first through `python -m exporter`, the rest in-process
        result = python_m("exporter", *args) if i == 0 else in_process(exporter_main, *args)
        assert_one_line_error(result)
        assert message in result.stderr, (args, result.stderr)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.tmp"))


def test_failed_parity_leaves_no_file(tmp_path, monkeypatch):
    """When parity fails (forced here by demanding bit-exact float math), nothing is written."""
    import exporter.export as ex

    pth = save_random_generator(tmp_path / "g.pth")
    monkeypatch.setitem(ex.TOLERANCE, "fp32", 0.0)
    with pytest.raises(ex.UserError, match="parity check failed"):
        ex.export(pth, tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists() and not list(tmp_path.glob("*.tmp"))
