"""Data parallelism on this machine: 1 process x T threads against N processes x T/N threads (torchrun, DDP).

The same single process on one thread runs too, so "more processes" and "fewer threads each" can be told
apart. Both sides are the real command on the same images, epochs and global batch (N x batch/N per rank), one
after the other: `python -m trainer` against `torchrun --nproc_per_node N -m trainer`. Reported: the
training throughput (images/s of the whole run, the mean of its log points after the first, from
metrics.jsonl) and the wall time of each command, start-up included. Every run is on the CPU (`--device cpu`),
also on a machine with a GPU, where `auto` would give rank 1 cuda:1 and a one-GPU machine has none;
benchmarks/gpu_check.py runs torchrun on CUDA (NCCL).

    python benchmarks/ddp_speed.py                          # 2 processes x 1 thread vs 1 x 2 (and 1 x 1), 8,192 images
    python benchmarks/ddp_speed.py --limit 60000 --epochs 2 # the full set
    python benchmarks/ddp_speed.py --quick                  # checks the script runs: 512 images, narrow models
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def timed_run(command: list[str], threads: int, out: Path) -> tuple[float, float]:
    """(images/s from the run's own log points, wall seconds of the whole command)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    rates = [json.loads(line)["images_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "images_per_s" in line]
    steady = rates[1:] or rates  # the first log point holds the warm-up
    return sum(steady) / len(steady), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads in all (default: the cores)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch: each of N ranks takes 1/N")
    parser.add_argument("--limit", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=8)
    parser.add_argument("--quick", action="store_true",
                        help="512 images, G and D 8 wide, a log point every 2 steps: checks the script runs "
                             "(its figures are not the study's)")
    args = parser.parse_args()
    n = args.processes
    if args.quick:
        args.limit, args.epochs, args.log_every = 512, 1, 2
    common = ["--device", "cpu", "--limit", str(args.limit), "--epochs", str(args.epochs), "--eval-every", "0",
              "--log-every", str(args.log_every), "--sample-every", "1000", "--no-tensorboard",
              *(["--g-width", "8", "--d-width", "8"] if args.quick else [])]
    print(f"{args.limit} images x {args.epochs} epoch(s), global batch {args.batch_size}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before the runs")
    with tempfile.TemporaryDirectory() as tmp:
        single_out, ddp_out = Path(tmp) / "single", Path(tmp) / "ddp"
        single_command = [sys.executable, "-m", "trainer", *common, "--batch-size", str(args.batch_size)]
        single = timed_run([*single_command, "--out", str(single_out)], args.threads, single_out)
        # The same single process on one thread: separates "more processes" from "fewer threads each".
        one_thread = timed_run([*single_command, "--out", str(Path(tmp) / "one")], 1, Path(tmp) / "one")
        ddp = timed_run([TORCHRUN, "--standalone", "--nproc_per_node", str(n), "-m", "trainer", *common,
                         "--batch-size", str(args.batch_size // n), "--out", str(ddp_out)],
                        max(1, args.threads // n), ddp_out)
    print(f"1 process x {args.threads} threads (python -m trainer):        {single[0]:8.1f} images/s, "
          f"wall {single[1]:6.1f} s")
    print(f"1 process x 1 thread (python -m trainer):           {one_thread[0]:8.1f} images/s, "
          f"wall {one_thread[1]:6.1f} s")
    print(f"{n} processes x {max(1, args.threads // n)} thread(s) (torchrun, DDP, gloo): {ddp[0]:8.1f} images/s, "
          f"wall {ddp[1]:6.1f} s")
    print(f"throughput ratio (DDP / single) {ddp[0] / single[0]:.2f}x, wall-time ratio {ddp[1] / single[1]:.2f}x")


if __name__ == "__main__":
    main()
