"""`python -m trainer` as users run it: outputs, exact resume, Ctrl-C, the NaN guard, bad input."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import fields

import numpy as np
import pytest
import torch
from conftest import ENV, REPO, assert_one_line_error, assert_run_outputs, python_m
from PIL import Image

from trainer.cli import main
from trainer.config import TrainConfig

# Narrow models where width does not matter; --device cpu so the tests mean the same on a CUDA host.
# TensorBoard's writer costs seconds to start and has its own tests (tests/test_tracking.py).
QUICK = ["--limit", "256", "--batch-size", "64", "--log-every", "2", "--eval-every", "0", "--device", "cpu",
         "--g-width", "16", "--d-width", "16", "--no-tensorboard"]


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll until `condition()` holds; fail the test (rather than carry on regardless) if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def last_line_is_the_error(err: str) -> None:
    """In-process bad input or stop: the run's last stderr line is its one `error:` line, and no traceback."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error: ") for line in lines) == 1, err


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = python_m("trainer", *QUICK, "--epochs", "1", "--sample-every-steps", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_one_epoch_writes_every_output(one_epoch_run):
    out, result = one_epoch_run
    assert_run_outputs(out)
    assert "epoch 1/1" in result.stderr and "health=" in result.stderr
    # the first line says on what it runs, at which precision, and how much data per epoch
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("training on cpu, ") and "256 mnist images, 4 steps of 64 per epoch" in first_line


def test_generator_is_self_describing(one_epoch_run):
    out, _ = one_epoch_run
    saved = torch.load(out / "generator.pth", weights_only=True)
    assert saved["config"]["latent_dim"] == 100 and saved["config"]["num_classes"] == 10
    from trainer.checkpoint import generator_from_file

    generator, info = generator_from_file(saved, "generator.pth")
    assert info["epochs"] == 1
    assert generator(torch.randn(2, 100), torch.tensor([0, 1])).shape == (2, 1, 28, 28)
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert {"generator", "discriminator", "opt_g", "opt_d", "rng", "config", "history", "epoch"} <= set(checkpoint)


def test_metrics_samples_and_config(one_epoch_run):
    out, _ = one_epoch_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2  # steps 2 and 4
    for key in ["epoch", "step", "loss_g", "loss_d", "d_x", "d_gz", "images_per_s", "health"]:
        assert key in records[0]
    assert 0 <= records[-1]["d_x"] <= 1 and records[-1]["health"] in ("green", "yellow", "red")
    grid = np.asarray(Image.open(out / "samples" / "epoch_001.png"))
    assert grid.shape == (2 * (10 * 30 + 2), 2 * (10 * 30 + 2))  # 10 rows (one per digit) x 10, upscaled 2x
    # the collage of the epochs' grids (at 1x, 8 px apart), and --sample-every-steps 2's grids within the epoch
    collage = np.asarray(Image.open(out / "training_progress.png"))
    assert collage.shape == (10 * 30 + 2 + 16,) * 2 and (collage[8:-8, 8:-8] == grid[::2, ::2]).all()
    steps = sorted(p.name for p in (out / "samples").glob("step_*.png"))
    assert steps == ["step_0000002.png", "step_0000004.png"]
    assert np.asarray(Image.open(out / "samples" / steps[-1])).shape == grid.shape
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["device"] == "cpu" and config["config"]["epochs"] == 1
    assert "torch" in config["versions"]
    summary = (out / "model_summary.txt").read_text()
    assert "Generator" in summary and "Discriminator" in summary and "[2, 1, 28, 28]" in summary


def _weights(path):
    checkpoint = torch.load(path, weights_only=True)
    discriminator = {"D." + k: v for k, v in checkpoint["discriminator"]["state_dict"].items()}
    ema = {"EMA." + k: v for k, v in (checkpoint["generator_ema"] or {"state_dict": {}})["state_dict"].items()}
    return {**checkpoint["generator"]["state_dict"], **discriminator, **ema}


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ after resume: {different[:5]}"


def test_the_default_run_averages_g_and_decays_the_rates_over_its_last_60_percent(tmp_path):
    steps = 4  # --limit 256 at --batch-size 64
    assert main([*QUICK, "--epochs", "2", "--save-every", "1", "--out", str(tmp_path)]) == 0

    def rates(epoch):
        checkpoint = torch.load(tmp_path / f"checkpoints/epoch_{epoch:03d}.pt", weights_only=True)
        return [checkpoint[opt]["param_groups"][0]["lr"] for opt in ("opt_g", "opt_d")], checkpoint

    (first, _), (last, checkpoint) = rates(1), rates(2)
    assert first == [2e-4, 2e-4]  # epoch 1 of 2: constant (the decay takes 60% of 2, rounded down: 1 epoch)
    assert last == pytest.approx([2e-4 / steps] * 2)  # the last step of the decay's one epoch: 1/4 of the rate left
    assert checkpoint["config"]["ema"] == 0.999 and checkpoint["generator_ema"] is not None
    assert json.loads((tmp_path / "config.json").read_text())["resolved"]["lr_decay_epochs"] == 1  # what ran
    assert [TrainConfig(epochs=n).decay_epochs for n in (1, 10, 24, 30)] == [0, 6, 14, 18]  # measured at 24, 30
    assert TrainConfig().epochs == 24
    # what users get (generator.pth, the export) is the averaged G, not the live one
    exported = torch.load(tmp_path / "generator.pth", weights_only=True)["state_dict"]
    _assert_bitwise_equal(exported, checkpoint["generator_ema"]["state_dict"])
    assert not all(torch.equal(exported[k], v) for k, v in checkpoint["generator"]["state_dict"].items())


def test_resume_is_bitwise_exact(tmp_path, capsys):
    # A 2-epoch run resumed from its epoch-1 checkpoint ends as the run straight through: weights, the averaged
    # G and the rates' schedule (the decay covers epoch 2). Extending a run (--resume --epochs N): test_losses.py
    opts = [*QUICK, "--precision", "fp32", "--ema", "0.9", "--epochs", "2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*opts, "--save-every", "1", "--out", str(straight)]) == 0
    capsys.readouterr()
    assert main(["--resume", str(straight / "checkpoints/epoch_001.pt"), "--out", str(split)]) == 0
    # The last line says what this process did, and what the run holds.
    resumed = capsys.readouterr().err
    assert "done: trained epoch 2 in" in resumed and "the run holds 2 epochs" in resumed
    weights = _weights(split / "checkpoints/last.pt")
    assert any(k.startswith("EMA.") for k in weights)
    _assert_bitwise_equal(_weights(straight / "checkpoints/last.pt"), weights)
    lines = (straight / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 4, 6, 8]


def test_a_checkpoint_from_before_the_60_percent_decay_resumes_with_its_40_percent(tmp_path):
    # Written by the trainer of before 2026-12-07 (no "decay_share"): 2 of 5 epochs, then resumed to the end.
    # Its rates must fall over the last round(0.4 x 5) = 2 epochs, as when it started, not today's 3.
    assert main([*QUICK, "--epochs", "2", "--eval-every", "0", "--out", str(tmp_path)]) == 0
    last = tmp_path / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint.pop("decay_share") == 0.6
    torch.save(checkpoint, last)
    assert main(["--resume", "--epochs", "5", "--save-every", "1", "--out", str(tmp_path)]) == 0
    epoch_3 = torch.load(tmp_path / "checkpoints" / "epoch_003.pt", weights_only=True)
    assert epoch_3["opt_g"]["param_groups"][0]["lr"] == 2e-4  # constant through epoch 3 (60% would decay it)
    assert epoch_3["config"]["lr_decay_epochs"] == 2 and epoch_3["decay_share"] == 0.6


def test_sigint_saves_and_resume_continues_exactly(tmp_path):
    opts = ["--limit", "3200", "--batch-size", "64", "--log-every", "2", "--precision", "fp32", "--epochs", "2",
            "--eval-every", "0", "--device", "cpu", "--g-width", "16", "--d-width", "16", "--no-tensorboard"]
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *opts, "--out", str(interrupted)], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = interrupted / "metrics.jsonl"
    try:
        # interrupt once two log points are written (step 4 of 100), not after a guessed delay
        wait_for(lambda: proc.poll() is not None or (metrics.exists() and metrics.read_text().count("\n") >= 2),
                 120, "two log points in metrics.jsonl")
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "saved" in stderr and "last.pt" in stderr and "--resume" in stderr
    checkpoint = torch.load(interrupted / "checkpoints/last.pt", weights_only=True)
    assert 0 < checkpoint["global_step"] < 100

    assert main(["--resume", "--out", str(interrupted)]) == 0
    assert main([*opts, "--out", str(straight)]) == 0
    _assert_bitwise_equal(_weights(straight / "checkpoints/last.pt"), _weights(interrupted / "checkpoints/last.pt"))


def test_nonfinite_loss_stops_with_a_clear_message(tmp_path, capsys):
    code = main([*QUICK, "--epochs", "3", "--lr-d", "1e30", "--lr-g", "1e30", "--log-every", "1",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3, err
    last_line_is_the_error(err)
    assert "non-finite loss at epoch 1, step" in err and "no checkpoint was saved yet" in err
    assert not (tmp_path / "generator.pth").exists()


def test_a_nonfinite_loss_after_epoch_1_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """The README's promise: the run stops, and checkpoints/last.pt stays the last good epoch's."""
    assert main([*QUICK, "--epochs", "1", "--lr-decay-epochs", "0", "--out", str(tmp_path)]) == 0
    last = tmp_path / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    for optimizer in ("opt_g", "opt_d"):  # a rate that blows the next epoch up (the rates are not rescheduled)
        checkpoint[optimizer]["param_groups"][0]["lr"] = 1e30
    torch.save(checkpoint, last)
    good = last.read_bytes()
    capsys.readouterr()
    assert main(["--resume", "--epochs", "2", "--log-every", "1", "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    last_line_is_the_error(err)
    assert "non-finite loss at epoch 2, step" in err and f"last good checkpoint: {last} (epoch 1)" in err
    assert last.read_bytes() == good  # not overwritten by the poisoned weights
    assert torch.load(tmp_path / "generator.pth", weights_only=True)["epochs"] == 1  # epoch 1's file stays


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--batch-size", "0"], "batch size must be >= 1"),
        (["--image-size", "48"], "image size must be one of 28, 32, 64"),
        (["--lr-g", "0"], "--lr-g must be > 0"),
        (["--lr-d", "-1"], "--lr-d must be > 0"),
        (["--g-width", "0"], "--g-width must be >= 1"),
        (["--d-blocks", "-1"], "--d-blocks must be >= 0"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--data-dir", "/nonexistent/mnist"], "not a folder"),
        (["--resume", "/nonexistent/last.pt"], "no such file"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    code = main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_sizes_that_cannot_fit_are_refused_before_any_work(tmp_path, capsys):
    too_big = {
        ("--batch-size", "100000"): "--batch-size 100000 is larger than the training set (60000 images)",
        ("--latent-dim", "5000000"): "lower --latent-dim",
        ("--d-width", "100000"): "lower --latent-dim, --g-width, --d-width or --d-blocks",
    }
    for args, message in too_big.items():
        assert main([*args, "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # refused before the output folder was made
    # and from the shell: one line, no traceback, before any work
    result = python_m("trainer", "--d-width", "100000", "--device", "cpu", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "lower --latent-dim" in result.stderr
    assert_one_line_error(result)
    assert not (tmp_path / "out").exists()


def test_out_of_memory_while_training_is_one_line(tmp_path):
    """A batch whose activations do not fit (here: a 6 GiB address-space limit) names the option to lower."""
    import resource

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    command = [sys.executable, "-m", "trainer", "--limit", "4096", "--batch-size", "4096", "--image-size", "64",
               "--epochs", "1", "--eval-every", "0", "--device", "cpu", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
                            preexec_fn=limit_memory)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result)
    assert "out of memory on cpu at --batch-size 4096" in result.stderr and "lower --batch-size" in result.stderr
    assert not (tmp_path / "generator.pth").exists() and not list(tmp_path.rglob("*.tmp"))


def test_a_run_sweeps_the_temporary_files_a_killed_run_left(tmp_path):
    out = tmp_path / "run"
    (out / "samples").mkdir(parents=True)
    stale = [out / ".loss_curve.png.k3j_x9a2.tmp", out / "samples" / ".epoch_039.png.a1b2c3d4.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    mine = out / "notes.tmp"  # not a name atomic writes use: left alone
    mine.write_text("keep")
    assert main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    assert not any(p.exists() for p in stale) and mine.exists()


def test_stopping_is_not_a_user_error():
    """`except UserError` (bad input) must never swallow Ctrl-C or the NaN stop."""
    from infer.errors import UserError
    from trainer.train import Interrupted, NonFiniteLoss

    assert not issubclass(Interrupted, UserError) and not issubclass(NonFiniteLoss, UserError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_asked_for_but_absent(tmp_path, capsys):
    assert main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main([*QUICK, "--out", str(blocker / "out")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_corrupt_and_incompatible_resume_files(one_epoch_run, tmp_path, capsys):
    out, _ = one_epoch_run
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((out / "checkpoints/last.pt").read_bytes()[:5000])
    assert main(["--resume", str(corrupt), "--out", str(tmp_path)]) == 2
    assert "not a readable PyTorch file" in capsys.readouterr().err
    assert main(["--resume", str(out / "generator.pth"), "--out", str(tmp_path)]) == 2
    assert "not an mnist-gen training checkpoint" in capsys.readouterr().err
    assert main(["--resume", str(out / "checkpoints/last.pt"), "--image-size", "64", "--out", str(tmp_path)]) == 2
    assert "does not match the checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("ema", [["--ema", "0"], []], ids=["live", "averaged-default"])
def test_fid_during_training_keeps_the_best(tmp_path, ema):
    out = tmp_path / "run"
    result = python_m("trainer", "--limit", "1024", "--batch-size", "64", "--epochs", "2", "--eval-samples", "500",
                      "--device", "cpu", "--g-width", "16", "--d-width", "16", "--out", str(out), *ema)
    assert result.returncode == 0, result.stderr
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "fid_train" in r]
    assert [r["epoch"] for r in evals] == [1, 2] and "FID(train)=" in result.stderr
    # By default the averaged G is scored, kept and exported; the live G is not scored (half the evaluation).
    assert not any("fid_live" in r for r in evals)
    best = min(evals, key=lambda r: r["fid_train"])
    assert torch.load(out / "generator.pth", weights_only=True)["epochs"] == best["epoch"]
    assert torch.load(out / "checkpoints" / "best.pt", weights_only=True)["epoch"] == best["epoch"]
    # The test-set figures are mnist-gen score's (and python -m trainer.report's): tests/test_losses.py


def test_a_64_pixel_mnist_run_is_scored_and_keeps_its_best_epoch(tmp_path):
    """The bundled classifier reads 28 px: 64 px samples are resized to it, so 64 px runs get FID too."""
    result = python_m("trainer", "--image-size", "64", "--limit", "256", "--batch-size", "64", "--epochs", "1",
                      "--eval-samples", "300", "--device", "cpu", "--g-width", "16", "--d-width", "16",
                      "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    evals = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "fid_train" in r]
    assert len(evals) == 1 and evals[0]["fid_train"] > 0 and (tmp_path / "checkpoints" / "best.pt").is_file()


def test_a_checkpoint_from_before_d_blocks_resumes_with_the_papers_d(tmp_path):
    """Files written before --d-blocks existed hold the paper's D (no block): they resume as that, not as today's
    default of one block (which could not load their D)."""
    old = tmp_path / "old"
    assert main([*QUICK, "--epochs", "1", "--d-blocks", "0", "--no-tensorboard", "--out", str(old)]) == 0
    ckpt = torch.load(old / "checkpoints/last.pt", weights_only=True)
    for config in (ckpt["config"], ckpt["generator"]["config"], ckpt["generator_ema"]["config"],
                   ckpt["discriminator"]["config"]):
        del config["d_blocks"]
    torch.save(ckpt, old / "checkpoints/last.pt")
    assert TrainConfig().d_blocks > 0
    assert main(["--resume", "--epochs", "2", "--out", str(old)]) == 0
    resumed = torch.load(old / "checkpoints/last.pt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["config"]["d_blocks"] == 0


def test_model_widths_train_export_and_generate(tmp_path, capsys):
    """--g-width/--d-width (ngf/ndf) and --d-blocks shape the models, travel with generator.pth to ONNX, and lock
    on resume."""
    assert main([*QUICK, "--epochs", "1", "--g-width", "16", "--d-width", "96", "--d-blocks", "2",
                 "--out", str(tmp_path)]) == 0
    g = torch.load(tmp_path / "generator.pth", weights_only=True)
    d = torch.load(tmp_path / "discriminator.pth", weights_only=True)
    assert g["state_dict"]["main.0.weight"].shape[1] == 16 * 4  # the 28 px stack's first layer: 4 x ngf
    assert d["state_dict"]["main.0.weight"].shape[0] == 96
    blocks = [v.shape for k, v in d["state_dict"].items() if k.startswith("main.") and v.shape[-2:] == (3, 3)]
    assert blocks == [(192, 192, 3, 3)] * 2  # two 3x3 convs at D's 7x7 map, 2 x ndf wide
    exported = python_m("exporter", str(tmp_path / "generator.pth"))
    assert exported.returncode == 0, exported.stderr
    drawn = python_m("infer", "infer", "--model", str(tmp_path / "generator.onnx"), "--n", "4",
                     "--out", str(tmp_path / "grid.png"))
    assert drawn.returncode == 0, drawn.stderr
    assert Image.open(tmp_path / "grid.png").size[0] > 28
    capsys.readouterr()
    for option, saved in (("--d-width", 96), ("--d-blocks", 2)):  # locked on resume
        given = "64" if option == "--d-width" else "0"
        assert main(["--resume", "--epochs", "2", option, given, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {option} {given} does not match the checkpoint ({saved}); drop it to resume, or start " \
                      "a new run in another --out\n"


def test_keep_last_exports_the_final_epochs_averaged_g(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*QUICK, "--epochs", "2", "--eval-every", "1", "--eval-samples", "200", "--keep", "last",
                 "--out", str(out)]) == 0
    assert "generator.pth is from epoch" not in capsys.readouterr().err  # --keep best's note, not this one's
    exported = torch.load(out / "generator.pth", weights_only=True)
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert exported["epochs"] == 2
    _assert_bitwise_equal(exported["state_dict"], checkpoint["generator_ema"]["state_dict"])


def test_an_unconditional_64_pixel_mnist_run(tmp_path, capsys):
    """The DCGAN paper's 64x64 stack on MNIST, without labels: its G ignores labels and its grid is 8 x 8."""
    assert main([*QUICK, "--epochs", "1", "--image-size", "64", "--unconditional", "--limit", "128",
                 "--out", str(tmp_path)]) == 0
    assert_run_outputs(tmp_path)
    config = torch.load(tmp_path / "generator.pth", weights_only=True)["config"]
    assert (config["image_size"], config["num_classes"]) == (64, 0)
    grid = np.asarray(Image.open(tmp_path / "samples" / "epoch_001.png"))
    assert grid.shape == (2 * (8 * 66 + 2), 2 * (8 * 66 + 2))  # 8 x 8 images of 64 px, 2 px gaps, upscaled 2x
    assert "aux_acc" not in json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])


def test_help_lists_every_option_with_its_default():
    result = python_m("trainer", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m trainer")
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for name in (f.name for f in fields(TrainConfig)):
        assert "--" + name.replace("_", "-") in text, name
    assert "(default 24)" in text and "bce 0.0002, hinge 0.0002, wgan-gp 0.0002" in text
    assert "the last 60%, rounded down" in text
    assert "lsgan" not in text and "--mismatch" not in text  # removed: rejected by measurement


def test_checkpoints_from_before_the_removed_options(one_epoch_run, tmp_path, capsys):
    """--mismatch and --loss lsgan were removed: a checkpoint that recorded mismatch 0 (every default run) resumes;
    one that trained with either is refused in one line, not resumed as some other run."""
    out, _ = one_epoch_run
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.pt"
    checkpoint = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    for config, message in [({"mismatch": 0.5}, "trained with --mismatch"), ({"loss": "lsgan"}, "--loss lsgan")]:
        torch.save({**checkpoint, "config": {**checkpoint["config"], **config}}, last)
        assert main(["--resume", "--epochs", "2", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    torch.save({**checkpoint, "config": {**checkpoint["config"], "mismatch": 0.0}}, last)
    assert main(["--resume", "--epochs", "2", "--out", str(tmp_path)]) == 0
    assert torch.load(last, weights_only=True)["epoch"] == 2
