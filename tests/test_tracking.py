"""TensorBoard event files and W&B (offline) as a user reads them after `python -m trainer`."""

import json
import math

import pytest
from conftest import ENV, python_m

QUICK = ["--limit", "256", "--batch-size", "64", "--log-every", "2", "--epochs", "1", "--device", "cpu",
         "--g-width", "8", "--d-width", "8"]  # narrow: the width changes nothing that is logged


def wandb_env(tmp_path, **extra) -> dict:
    """W&B with its config and cache in tmp_path, never the user's; no API key unless given."""
    env = {k: v for k, v in ENV.items() if not k.startswith("WANDB_")}
    return {**env, "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
            "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), **extra}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracked")
    out = tmp / "run"
    result = python_m("trainer", *QUICK, "--eval-samples", "200", "--wandb", "mnist-gen-tests", "--out", str(out),
                      env=wandb_env(tmp, WANDB_MODE="offline"))
    assert result.returncode == 0, result.stderr
    return out


def test_tensorboard_holds_the_scalars_the_samples_and_the_options(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    logged = ["loss_d", "loss_g", "d_x", "d_gz", "pixel_diversity", "images_per_s"]
    evaluated = {"eval/fid_train", "eval/diversity", "eval/inception_score"}
    assert {f"train/{k}" for k in logged} | evaluated <= scalars, scalars
    # The same figures as metrics.jsonl, at the same steps.
    records = [json.loads(line) for line in (tracked_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss_d" in r]
    assert [e.step for e in events.Scalars("train/loss_d")] == [r["step"] for r in train] == [2, 4]
    assert [e.value for e in events.Scalars("train/loss_d")] == pytest.approx([r["loss_d"] for r in train])
    fid = events.Scalars("eval/fid_train")
    assert len(fid) == 1 and math.isfinite(fid[0].value)
    assert fid[0].value == pytest.approx(next(r["fid_train"] for r in records if "fid_train" in r))
    # The epoch's sample grid, as written to samples/epoch_001.png (10 rows of 10 digits, 2x).
    (image,) = events.Images("samples")
    assert (image.width, image.height) == (2 * (10 * 30 + 2), 2 * (10 * 30 + 2)) and image.step == 4
    # The run's options as hyperparameters (TensorBoard's HParams tab).
    assert events.PluginTagToContent("hparams"), "no hyperparameters written"


def test_wandb_offline_writes_its_run_folder(tracked_run):
    (run,) = (tracked_run / "wandb").glob("offline-run-*")
    (history,) = run.glob("run-*.wandb")
    assert history.stat().st_size > 0
    assert list((run / "files" / "media" / "images").glob("samples_*.png"))  # the sample grid


def test_wandb_unreachable_logs_offline_and_training_goes_on(tmp_path):
    """No API key (as with no network): a note, the figures kept under OUT/wandb, and a normal run."""
    out = tmp_path / "run"
    result = python_m("trainer", *QUICK, "--eval-every", "0", "--no-tensorboard", "--wandb", "mnist-gen-tests",
                      "--out", str(out), env=wandb_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "note: W&B is not reachable" in result.stderr and "wandb sync" in result.stderr
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (out / "generator.pth").is_file() and not (out / "tensorboard").exists()
