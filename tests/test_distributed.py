"""`torchrun ... -m trainer` as users start it (gloo on CPU): outputs, shards, 2 nodes, resume, Ctrl-C, failures."""

import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV, REPO, assert_run_outputs, run

from trainer.distributed import Distributed

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# gloo on CPU, as on a CUDA host too; narrow models, since the width changes nothing the ranks agree on.
NARROW = ["--device", "cpu", "--g-width", "8", "--d-width", "8"]
TINY_RUN = ["--limit", "256", "--batch-size", "32", "--eval-every", "0", "--log-every", "2", *NARROW]
# Long enough that a signal sent after step 2 lands mid-epoch: 937 steps of 2 x 32 images.
LONG_RUN = ["--batch-size", "32", "--eval-every", "0", "--log-every", "2", "--epochs", "1", *NARROW]
TIMEOUT = 240


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    Between this check and torchrun's bind, nothing else can be handed this port by the system (port 0 and
    outgoing connections draw from the ephemeral range only), so no other process takes it meanwhile.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for_steps(metrics: Path, *procs: subprocess.Popen, lines: int = 2) -> None:
    """Until rank 0 has logged `lines` metrics records; fails (and stops the job) if that never happens."""
    deadline = time.time() + TIMEOUT
    while not (metrics.exists() and metrics.read_text().count("\n") >= lines):
        if time.time() > deadline or any(proc.poll() is not None for proc in procs):
            for proc in procs:
                proc.kill()
            pytest.fail(f"no {lines} metrics records before the deadline or the job's end")
        time.sleep(0.05)


def trainer_worker(torchrun_pid: int, timeout: float = 30) -> int:
    """The pid of the trainer process torchrun `torchrun_pid` started (a child of it), waiting until it shows."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if ppid == torchrun_pid and b"trainer" in cmdline:
                return int(stat.parent.name)
        time.sleep(0.05)
    pytest.fail(f"torchrun {torchrun_pid} has no trainer worker after {timeout} s")


def torchrun(*args: str, nproc: int = 2, **kw):
    """One machine: --standalone picks a free port for its own rendezvous."""
    return run(TORCHRUN, "--standalone", "--nproc_per_node", str(nproc), "-m", "trainer", *args, timeout=TIMEOUT, **kw)


def two_nodes(node_args: tuple[list[str], list[str]]) -> list[subprocess.CompletedProcess]:
    """Two `torchrun --nnodes 2` launches meeting at a c10d rendezvous on loopback, one process each."""
    endpoint = f"127.0.0.1:{free_port()}"
    procs = []
    for args in node_args:
        # c10d hands out the ranks itself (torchrun ignores --node_rank with it), as on real machines.
        command = [TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                   endpoint, "--rdzv-id", "test", "-m", "trainer", *args]
        procs.append(subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def our_lines(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


def assert_no_trainer_traceback(stderr: str) -> None:
    """torchrun prints its own report of a failed job; no rank may add a traceback from our code."""
    assert f"{REPO / 'trainer'}" not in stderr, stderr


# ---- the shards ------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_rank_shards_are_disjoint_and_cover_the_epoch(world_size):
    order, batch = torch.randperm(1000, generator=torch.Generator().manual_seed(0)), 32
    shards = [Distributed(rank, world_size).shard(order, batch) for rank in range(world_size)]
    steps = len(order) // (world_size * batch)
    assert all(len(s) == steps * batch for s in shards)
    seen = torch.cat(shards)
    assert len(seen.unique()) == len(seen)  # disjoint
    assert set(seen.tolist()) == set(order[: steps * world_size * batch].tolist())  # the whole epoch, once
    # Step s of every rank comes from the s-th block of the permutation, so a resume at step s is exact.
    for step in range(steps):
        block = order[step * world_size * batch : (step + 1) * world_size * batch]
        assert set(torch.cat([s[step * batch : (step + 1) * batch] for s in shards]).tolist()) == set(block.tolist())


def test_one_process_sees_exactly_the_single_process_batches():
    order = torch.randperm(300)
    assert torch.equal(Distributed().shard(order, 64), order[: 4 * 64])


# ---- whole runs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    # FID on: scored once by rank 0 and shared, so every rank keeps the same best epoch.
    result = torchrun(*TINY_RUN, "--epochs", "1", "--precision", "fp32", "--eval-every", "1", "--eval-samples", "200",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_two_processes_write_every_output_once(two_process_run):
    out, result = two_process_run
    assert_run_outputs(out)
    assert len(list((out / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    # Rank 0 speaks for the run: one epoch line, one done line.
    assert len(our_lines(result.stderr, "epoch 1/1 done")) == 1 and len(our_lines(result.stderr, "done:")) == 1
    # 256 images, 2 ranks x 32 per step: 4 steps, logged at steps 2 and 4, averaged over the ranks.
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train, evals = [r for r in records if "loss_d" in r], [r for r in records if "fid_train" in r]
    assert [r["step"] for r in train] == [2, 4]
    assert all(math.isfinite(r[k]) for r in train for k in ("loss_d", "loss_g", "d_x", "d_gz"))
    assert len(evals) == 1 and math.isfinite(evals[0]["fid_train"])
    assert (out / "checkpoints/best.pt").is_file()
    assert json.loads((out / "config.json").read_text())["resolved"]["world_size"] == 2
    checkpoint = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]["noise_ranks"]) == 2
    assert checkpoint["global_step"] == 4 and checkpoint["best"]["epoch"] == 1


WATCH_TEARDOWN = """
import gc, sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
destroy = dist.destroy_process_group
def watched(*args, **kwargs):
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    print(f"DDP wrappers alive at destroy_process_group: {alive}", file=sys.stderr, flush=True)
    destroy(*args, **kwargs)
dist.destroy_process_group = watched
from trainer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_finished_rank_frees_the_process_group_before_python_exits(tmp_path):
    # A DDP wrapper still alive at destroy_process_group keeps the gloo group until interpreter
    # teardown, where gloo's threads can abort the rank (SIGABRT) after a run that went well.
    script = tmp_path / "watch_teardown.py"
    script.write_text(WATCH_TEARDOWN)
    result = run(TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), *TINY_RUN, "--epochs", "1",
                 "--out", str(tmp_path / "out"), timeout=TIMEOUT, env={**ENV, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("DDP wrappers alive at destroy_process_group: 0") == 2, result.stderr


def test_two_nodes_on_loopback_complete_the_same_run(tmp_path):
    out = tmp_path / "run"
    args = [*TINY_RUN, "--epochs", "1", "--out", str(out)]
    for result in two_nodes((args, args)):
        assert result.returncode == 0, result.stderr
    assert (out / "generator.pth").is_file() and not list(out.rglob("*.tmp"))
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert torch.load(out / "checkpoints/last.pt", weights_only=True)["world_size"] == 2


def _weights(path):
    checkpoint = torch.load(path, weights_only=True)
    return {f"{part}.{k}": v for part in ("generator", "discriminator")
            for k, v in checkpoint[part]["state_dict"].items()}


def test_resume_of_a_two_process_run_is_exact(two_process_run, tmp_path):
    out, _ = two_process_run
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    (resumed / "checkpoints/last.pt").write_bytes((out / "checkpoints/last.pt").read_bytes())
    result = torchrun("--resume", "--epochs", "2", "--device", "cpu", "--out", str(resumed))
    assert result.returncode == 0, result.stderr
    straight = tmp_path / "straight"
    assert torchrun(*TINY_RUN, "--epochs", "2", "--precision", "fp32", "--out", str(straight)).returncode == 0
    a, b = _weights(straight / "checkpoints/last.pt"), _weights(resumed / "checkpoints/last.pt")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []

    # Another world size would give each rank other data and noise: refused in one line.
    single = run(sys.executable, "-m", "trainer", "--resume", "--epochs", "3", "--device", "cpu", "--out", str(resumed))
    assert single.returncode == 2
    assert our_lines(single.stderr, "error:") == [single.stderr.strip()]
    assert "written by 2 process(es), this run has 1" in single.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_every_rank_and_rank_0_saves(sig, tmp_path):
    command = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "trainer", *LONG_RUN, "--out", str(tmp_path)]
    proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(tmp_path / "metrics.jsonl", proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=TIMEOUT)
    # torchrun forwards the signal to every rank and then exits non-zero itself (its SignalException);
    # the ranks stop at the same step and exit 130, rank 0 saying where it saved.
    assert proc.returncode != 0
    assert_no_trainer_traceback(stderr)
    interrupted = our_lines(stderr, f"interrupted: {sig.name}: saved")
    assert len(interrupted) == 1 and "--resume" in interrupted[0], stderr
    checkpoint = torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)
    assert 0 < checkpoint["global_step"] < 937 and len(checkpoint["rng"]["noise_ranks"]) == 2
    assert not (tmp_path / "generator.pth").exists() and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("node_1, message", [
    # c10d numbers the ranks in the order they join: the node that lacks the data is rank 0 or 1
    (["--data-dir", "missing"], r"error: rank [01]: data dir missing is not a folder$"),
    (["--epochs", "2"], r"error: the ranks were started with different options: --epochs is [12] on rank"),
], ids=["data-missing-on-node-1", "other-options-on-node-1"])
def test_a_rank_that_refuses_stops_the_job_with_its_one_line(node_1, message, tmp_path):
    """Every rank stops before training, and the message is printed once."""
    out = tmp_path / "run"
    good = [*TINY_RUN, "--epochs", "1", "--out", str(out)]
    results = two_nodes((good, [*good, *node_1]))
    assert all(r.returncode != 0 for r in results)
    stderr = "".join(r.stderr for r in results)
    assert_no_trainer_traceback(stderr)
    errors = our_lines(stderr, "error:")
    assert len(errors) == 1 and re.match(message, errors[0]), stderr
    assert not (out / "generator.pth").exists() and not list(tmp_path.rglob("*.tmp"))


def test_a_non_finite_loss_stops_every_rank_with_one_line(tmp_path):
    result = torchrun(*TINY_RUN, "--epochs", "2", "--lr-d", "1e30", "--lr-g", "1e30", "--log-every", "1",
                      "--out", str(tmp_path))
    assert result.returncode != 0
    assert_no_trainer_traceback(result.stderr)
    errors = our_lines(result.stderr, "error:")
    assert len(errors) == 1 and "non-finite loss at epoch 1, step" in errors[0], result.stderr
    assert "exitcode  : 3" in result.stderr  # torchrun's report: the ranks' own exit code
    assert not (tmp_path / "generator.pth").exists()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "error: epochs must be >= 1"),
    (["--epochs", "many"], "error: argument --epochs: invalid int value"),
    (["--device", "cuda:1"], "error: --device cuda:1: under torchrun each process uses cuda:LOCAL_RANK"),
])
def test_a_bad_option_is_reported_once(args, message, tmp_path):
    result = torchrun(*TINY_RUN, *args, "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "error:" in line and "torch.distributed" not in line]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_a_rank_that_dies_mid_run_fails_the_job_cleanly(tmp_path):
    """The kernel's OOM killer, a lost machine: rank 1 is SIGKILLed; rank 0 stops with one line, no traceback."""
    args = [*LONG_RUN, "--out", str(tmp_path)]
    endpoint = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", endpoint, "--rdzv-id", "test", "-m", "trainer", *args],
                              cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    wait_for_steps(tmp_path / "metrics.jsonl", *procs)
    os.kill(trainer_worker(procs[1].pid), signal.SIGKILL)
    stderr = "".join(proc.communicate(timeout=TIMEOUT)[1] for proc in procs)
    assert all(proc.returncode != 0 for proc in procs)
    assert_no_trainer_traceback(stderr)
    assert len(our_lines(stderr, "rank ")) == 1 and "another rank is gone" in stderr, stderr
    assert not (tmp_path / "generator.pth").exists() and not list(tmp_path.rglob("*.tmp"))
