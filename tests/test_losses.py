"""Loss variants (--loss), the WGAN-GP critic, spectral norm, the learning-rate decay, and model
selection that never reads the test set."""

import json
import math
import shutil
import sys
from dataclasses import replace

import pytest
import torch
from conftest import assert_one_line_error, python_m, run
from PIL import Image

from trainer.cli import main
from trainer.data import BUNDLED_MNIST, load_dataset, to_float
from trainer.losses import LOSSES, gradient_penalty, r1_penalty
from trainer.model import Discriminator, ModelConfig, build_models
from trainer.monitor import GREEN, RED, YELLOW, Health

# 10 steps an epoch: wgan-gp (5 critic steps per G step) moves G twice in the first epoch
# --device cpu: the same meaning on a CUDA host; narrow models where width does not matter
TINY_RUN = ["--limit", "640", "--batch-size", "64", "--log-every", "5", "--eval-every", "0", "--precision", "fp32",
            "--device", "cpu", "--g-width", "16", "--d-width", "16", "--no-tensorboard"]


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(path):
    checkpoint = torch.load(path, weights_only=True)
    return {part + "." + k: v for part in ("generator", "discriminator")
            for k, v in checkpoint[part]["state_dict"].items()}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_loss_trains_with_finite_losses_and_resumes_exactly(loss, tmp_path, capsys):
    opts = [*TINY_RUN, "--loss", loss, "--spectral-norm" if loss == "hinge" else "--no-spectral-norm"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*opts, "--epochs", "2", "--out", str(straight)]) == 0
    assert main([*opts, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["--resume", "--epochs", "2", "--out", str(split)]) == 0
    capsys.readouterr()

    records = _records(straight)
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in records)
    a, b = _weights(straight / "checkpoints/last.pt"), _weights(split / "checkpoints/last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resume is not exact"
    checkpoint = torch.load(straight / "checkpoints/last.pt", weights_only=True)
    g_steps = 20 // LOSSES[loss].n_critic  # G moves once every n_critic steps
    assert int(checkpoint["opt_g"]["state"][0]["step"]) == g_steps
    assert int(checkpoint["opt_d"]["state"][0]["step"]) == 20


def test_wgan_gp_takes_its_own_defaults_unless_given(tmp_path, capsys):
    assert main([*TINY_RUN, "--loss", "wgan-gp", "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert {k: config["config"][k] for k in ("lr_g", "lr_d", "beta1", "beta2", "n_critic", "d_norm")} == \
        {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 2, "d_norm": "layer"}
    assert config["resolved"]["d_x_and_d_gz"] == "score"
    critic = torch.load(tmp_path / "a" / "discriminator.pth", weights_only=True)["state_dict"]
    assert not any("running_mean" in k for k in critic), "the WGAN-GP critic must have no BatchNorm"

    given = ["--loss", "wgan-gp", "--lr-g", "3e-4", "--beta1", "0.5", "--n-critic", "3", "--d-norm", "none"]
    assert main([*TINY_RUN, *given, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert (config["lr_g"], config["lr_d"], config["beta1"], config["n_critic"], config["d_norm"]) == \
        (3e-4, 2e-4, 0.5, 3, "none")
    err = capsys.readouterr().err
    assert "score(x)=" in err and "D(x)=" not in err  # a critic's score is not called a probability


def test_gradient_penalty_matches_a_hand_computed_value():
    real = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 1.0]]]])  # [2, 1, 2, 2]
    fake = torch.zeros_like(real)
    labels = torch.tensor([0, 2])

    # C(x, y) = (y + 1) * sum(x): its gradient is y + 1 in each of the 4 pixels, norm 2 (y + 1),
    # whatever the interpolate; so the penalty is mean((2 - 1)^2, (6 - 1)^2) = 13.
    def linear_critic(x, y):
        return (y + 1) * x.flatten(1).sum(1)

    noise = torch.Generator().manual_seed(0)
    assert gradient_penalty(linear_critic, real, fake, labels, noise).item() == pytest.approx(13.0)

    # C(x) = sum(x^2) / 2: the gradient is x_hat = e * real (fake = 0), norm e * |real|.
    def square_critic(x, y):
        return 0.5 * (x**2).flatten(1).sum(1)

    e = torch.rand(2, generator=torch.Generator().manual_seed(1))  # the draws gradient_penalty makes
    norms = e * torch.tensor([math.sqrt(1 + 4 + 9 + 16), 1.0])
    expected = ((norms - 1) ** 2).mean().item()
    got = gradient_penalty(square_critic, real, fake, labels, torch.Generator().manual_seed(1)).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_r1_penalty_matches_a_hand_computed_value():
    real = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 1.0]]]]).requires_grad_(True)
    labels = torch.tensor([0, 2])
    # D(x, y) = (y + 1) * sum(x): the gradient is y + 1 in each of the 4 pixels, |grad|^2 = 4 (y + 1)^2,
    # so the penalty is mean(4, 36) = 20
    assert r1_penalty((labels + 1) * real.flatten(1).sum(1), real).item() == pytest.approx(20.0)
    # D(x) = sum(x^2) / 2: the gradient is x itself, |x|^2 = 30 and 1
    assert r1_penalty(0.5 * (real**2).flatten(1).sum(1), real).item() == pytest.approx(15.5)


def _run_with_and_without(tmp_path, capsys, off: list, on: list, what: str):
    """2 epochs without the option, 2 with it straight and 1 + 1 resumed: finite, exact, and D is changed.

    Returns the resumed run's directory and the weights of the run without the option."""
    plain, straight, split = tmp_path / "plain", tmp_path / "straight", tmp_path / "split"
    assert main([*TINY_RUN, *off, "--epochs", "2", "--out", str(plain)]) == 0
    assert main([*TINY_RUN, *on, "--epochs", "2", "--out", str(straight)]) == 0
    assert main([*TINY_RUN, *on, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["--resume", "--epochs", "2", "--out", str(split)]) == 0
    capsys.readouterr()
    assert all(math.isfinite(r["loss_d"]) for r in _records(straight))
    a, b = _weights(straight / "checkpoints/last.pt"), _weights(split / "checkpoints/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "resume is not exact"
    off_weights = _weights(plain / "checkpoints/last.pt")
    # D's first layer reads the image and the label maps: both options train it differently
    assert not torch.equal(a["discriminator.main.0.weight"], off_weights["discriminator.main.0.weight"]), \
        f"{what} had no effect"
    return split, off_weights


def test_r1_trains_changes_d_and_resumes_exactly(tmp_path, capsys):
    split, off = _run_with_and_without(tmp_path, capsys, ["--r1", "0"], ["--r1", "1"], "R1")
    assert json.loads((split / "config.json").read_text())["config"]["r1"] == 1.0
    # a resumed run keeps its penalty: asking for another one is refused
    assert main(["--resume", "--r1", "0.5", "--epochs", "3", "--out", str(split)]) == 2
    assert "--r1 0.5 does not match the checkpoint (1.0)" in capsys.readouterr().err

    # a checkpoint written before --r1 existed (no r1 in its config) trained without R1 and resumes without it,
    # although bce's default is now 0.1: the same weights as the uninterrupted run without R1
    old = tmp_path / "old"
    assert main([*TINY_RUN, "--r1", "0", "--epochs", "1", "--out", str(old)]) == 0
    ckpt = torch.load(old / "checkpoints/last.pt", weights_only=True)
    del ckpt["config"]["r1"]
    torch.save(ckpt, old / "checkpoints/last.pt")
    assert main(["--resume", "--epochs", "2", "--out", str(old)]) == 0
    resumed = _weights(old / "checkpoints/last.pt")
    assert all(torch.equal(off[k], resumed[k]) for k in off), "a pre-R1 checkpoint resumed with R1"


def test_aux_classifier_learns_digits_changes_g_and_resumes_exactly(tmp_path, capsys):
    # D at its full width here: how fast its classifier learns the digits is what this test measures
    wide = ["--d-width", "64"]
    split, off = _run_with_and_without(tmp_path, capsys, ["--aux-weight", "0", *wide], ["--aux-weight", "1", *wide],
                                       "--aux-weight")
    on = _weights(split / "checkpoints/last.pt")
    assert not torch.equal(on["generator.main.0.weight"], off["generator.main.0.weight"])
    # the user sees how many of G's images D's classifier reads as the digit asked for
    assert all(0 <= r["aux_acc"] <= 1 for r in _records(split) if "loss_d" in r)
    # D's classifier reads real digits without their labels: after 20 steps it is already far above chance (10%)
    test = load_dataset("mnist", "test", None, None, None).take(1000)
    cfg = ModelConfig.from_dict(torch.load(split / "checkpoints/last.pt", weights_only=True)["discriminator"]["config"])
    d = Discriminator(cfg, classifier=True)
    d.load_state_dict({k.removeprefix("discriminator."): v for k, v in on.items() if k.startswith("discriminator.")})
    images = to_float(torch.from_numpy(test.images.copy()))
    with torch.no_grad():
        accuracy = (d.eval()(images, classify=True).argmax(1) == torch.from_numpy(test.labels)).float().mean()
    assert accuracy > 0.5, f"D's classifier reads {accuracy:.0%} of real test digits"
    assert main(["--resume", "--aux-weight", "0", "--epochs", "3", "--out", str(split)]) == 2
    assert "--aux-weight 0.0 does not match the checkpoint (1.0)" in capsys.readouterr().err

    # a checkpoint written before --aux-weight existed (no aux_weight in its config) resumes without it, although
    # bce's default is now 0.2
    plain = tmp_path / "plain"
    ckpt = torch.load(plain / "checkpoints/last.pt", weights_only=True)
    del ckpt["config"]["aux_weight"]
    torch.save(ckpt, plain / "checkpoints/last.pt")
    assert main(["--resume", "--epochs", "3", "--out", str(plain)]) == 0
    assert "aux_acc" not in _records(plain)[-1]


def test_spectral_norm_bounds_every_d_layer():
    _, discriminator = build_models(ModelConfig(d_width=8, d_blocks=0, spectral_norm=True))
    images, labels = torch.randn(4, 1, 28, 28), torch.arange(4)
    for _ in range(20):  # one power iteration per forward in training mode
        discriminator(images, labels)
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_health_reads_each_loss_in_its_own_terms():
    wgan = Health(LOSSES["wgan-gp"], window=1)
    # a critic's loss is negative in normal training: not "D stuck near 0", which it is for bce
    assert wgan.update({"loss_d": -3.0, "loss_g": 1.0, "d_x": 1.5, "d_gz": -1.5})[0] == GREEN
    assert Health(LOSSES["bce"], window=1).update({"loss_d": 0.001, "loss_g": 9.0, "d_x": 1.0, "d_gz": 0.0})[0] == RED
    state, reason = wgan.update({"loss_d": -30.0, "loss_g": 12.0, "d_x": 14.0, "d_gz": -12.0})
    assert state == YELLOW and "Wasserstein estimate" in reason
    hinge = Health(LOSSES["hinge"], window=1)
    assert hinge.update({"loss_d": 0.5, "loss_g": 0.0, "d_x": 0.8, "d_gz": -0.2})[0] == GREEN
    assert hinge.update({"loss_d": 0.05, "loss_g": 1.5, "d_x": 1.4, "d_gz": -1.5})[0] == YELLOW


def test_learning_rates_decay_linearly_to_zero_over_the_last_epochs(tmp_path, capsys):
    # 2 epochs of 10 steps, decay over the last 1: full rate for 10 steps, then 10/10, 9/10, ..., 1/10
    assert main([*TINY_RUN, "--epochs", "2", "--lr-decay-epochs", "1", "--out", str(tmp_path)]) == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 10)
    assert checkpoint["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 10)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "foo"], "--loss must be one of bce, hinge, wgan-gp, got 'foo'"),
        (["--n-critic", "0"], "--n-critic must be >= 1, got 0"),
        (["--gp-weight", "-1"], "--gp-weight must be > 0, got -1.0"),
        (["--r1", "-1"], "--r1 must be >= 0, e.g. 0.1 (0 = off), got -1.0"),
        (["--r1", "nan"], "--r1 must be >= 0"),
        (["--aux-weight", "-1"], "--aux-weight must be >= 0, e.g. 0.2 (0 = off), got -1.0"),
        (["--aux-weight", "0.2", "--unconditional"], "--aux-weight needs labels"),
        (["--loss", "wgan-gp", "--d-norm", "batch"], "needs a critic without BatchNorm"),
        (["--d-norm", "group"], "--d-norm must be one of auto, batch, layer, none"),
        (["--lr-decay-epochs", "3"], "--lr-decay-epochs must be in [0, --epochs 1], got 3"),
    ],
)
def test_bad_loss_options_are_one_line(args, message, tmp_path, capsys):
    code = main([*TINY_RUN, "--epochs", "1", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_with_a_classifier_as_wide_as_d_resumes_with_it(tmp_path, monkeypatch):
    """Checkpoints written before the classifier became half D's width (no classifier_width in their configs)
    hold one as wide as D: they resume with it, and bit for bit as a run that never stopped."""
    from trainer.config import TrainConfig

    half_width = TrainConfig.model_config
    monkeypatch.setattr(TrainConfig, "model_config",
                        lambda self, data: replace(half_width(self, data), classifier_width=self.d_width))
    opts = [*TINY_RUN, "--aux-weight", "1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*opts, "--epochs", "2", "--out", str(straight)]) == 0
    assert main([*opts, "--epochs", "1", "--out", str(split)]) == 0
    monkeypatch.undo()
    ckpt = torch.load(split / "checkpoints/last.pt", weights_only=True)
    for part in ("generator", "generator_ema", "discriminator"):
        del ckpt[part]["config"]["classifier_width"]
    torch.save(ckpt, split / "checkpoints/last.pt")
    assert main(["--resume", "--epochs", "2", "--out", str(split)]) == 0
    resumed = torch.load(split / "checkpoints/last.pt", weights_only=True)
    assert resumed["discriminator"]["state_dict"]["classifier.0.weight"].shape[0] == 16  # --d-width 16's
    a, b = _weights(straight / "checkpoints/last.pt"), _weights(split / "checkpoints/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run differs from the one that never stopped"


def test_the_aux_classifier_on_data_without_classes_is_one_line(tmp_path, capsys):
    option = ["--aux-weight", "0.2"]
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(64):
        Image.new("L", (28, 28), 4 * i).save(flat / f"{i}.png")
    args = ["--dataset", "folder", "--data-dir", str(flat), "--batch-size", "32", "--eval-every", "0"]
    assert main([*args, *option, "--epochs", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{option[0]} needs labels" in err and err.count("\n") == 1, err
    # without them the flat folder trains as the unconditional model it is (--aux-weight's default is off there)
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "plain")]) == 0


def test_bad_loss_from_the_shell_is_one_line(tmp_path):
    result = python_m("trainer", "--loss", "foo", "--out", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result)


# Runs the trainer with every file the process opens recorded (a Python audit hook: nothing of ours mocked).
AUDITED_RUN = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and args else None)
from trainer.cli import main
code = main(sys.argv[2:])
open(sys.argv[1], "w").write("\\n".join(opened))
sys.exit(code)
"""


def test_selection_never_reads_the_test_set(tmp_path):
    # A data dir with the training split only: a run that needed the test split would fail here.
    data = tmp_path / "mnist"
    data.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(BUNDLED_MNIST / name, data / name)
    out, log = tmp_path / "run", tmp_path / "opened.txt"
    result = run(sys.executable, "-c", AUDITED_RUN, str(log), "--data-dir", str(data), "--limit", "1024",
                 "--batch-size", "64", "--epochs", "3", "--eval-samples", "500", "--quality-fid", "1e9",
                 "--device", "cpu", "--g-width", "16", "--d-width", "16",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    opened = log.read_text().splitlines()
    assert any("train-images" in p for p in opened)  # the hook sees the files the run reads
    assert not [p for p in opened if "t10k" in p or "classifier_stats" in p], "the test set was read"

    # The best epoch is the one with the lowest FID against the training images.
    evals = [r for r in _records(out) if "fid_train" in r]
    assert [r["epoch"] for r in evals] == [1, 2, 3] and "fid" not in evals[0]
    best = min(evals, key=lambda r: r["fid_train"])
    assert torch.load(out / "generator.pth", weights_only=True)["epochs"] == best["epoch"]
    # Time-to-quality: a threshold every epoch meets is first met at epoch 1, and the last line says so.
    assert evals[0]["time_to_quality_s"] == evals[0]["wall_s"] > 0
    assert "time_to_quality_s" not in evals[1]
    assert "first <= 1e+09 at epoch 1" in result.stderr


def test_report_gives_the_test_set_figures_mnist_gen_score_gives(tmp_path):
    out = tmp_path / "run"
    result = python_m("trainer", "--limit", "1024", "--batch-size", "64", "--epochs", "1", "--eval-samples", "500",
                      "--loss", "hinge", "--device", "cpu", "--g-width", "16", "--d-width", "16", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = python_m("trainer.report", str(out), "--n", "500")
    assert report.returncode == 0, report.stderr
    row = report.stdout.strip().splitlines()[-1].split("|")
    test_fid, selection_fid = float(row[2]), float(row[6])
    assert selection_fid == pytest.approx(_records(out)[-1]["fid_train"], rel=1e-6)

    # Export and mnist-gen work for a G trained with any loss; their test FID is the report's.
    assert python_m("exporter", str(out / "generator.pth")).returncode == 0
    scored = python_m("infer", "score", "--model", str(out / "generator.onnx"), "--n", "500", "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["fid"] == pytest.approx(test_fid, abs=0.01)

    # --draws 2: the mean and range of the FIDs mnist-gen score gives at noise seeds 0 and 1.
    drawn = python_m("trainer.report", str(out), "--n", "500", "--draws", "2")
    assert drawn.returncode == 0, drawn.stderr
    row = drawn.stdout.strip().splitlines()[-1].split("|")
    seed1 = python_m("infer", "score", "--model", str(out / "generator.onnx"), "--n", "500", "--seed", "1", "--json")
    fids = sorted([test_fid, json.loads(seed1.stdout)["fid"]])
    assert float(row[2]) == pytest.approx(sum(fids) / 2, abs=0.01)
    assert [float(x) for x in row[3].split("-")] == pytest.approx(fids, abs=0.01)
