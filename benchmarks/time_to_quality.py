"""Time to quality: wall minutes until a training run's generator first reaches a test-set FID.

Runs `python -m trainer` as a user does (any options after `--`), keeps every epoch's checkpoint, then
scores each epoch on the MNIST test set with `python -m trainer.report --draws 5` (the project's
scorer at noise seeds 0-4, averaged: one seed's figure moves by up to half a point with the draw) and
prints, per epoch, the run's own wall minutes (its `wall_s`, evaluations included) and the test FID,
then the minutes at which each threshold was first reached. The last threshold is the quality of the
model bundled when the issue was filed, caf265c's 30-epoch run, on the same five draws.

With `--reference`, the same budget is run a second time by the trainer as it was when the
time-to-quality issue was filed: the code of commit caf265c, taken from this clone's git history
(`git archive`), with its own defaults, its own evaluation and its own step, so a later change to
any of them cannot move the reference. The ratios are printed: one command, one machine, one
session. Both runs' checkpoints are scored by today's `python -m trainer.report`, on the same
test-set noise.

    python benchmarks/time_to_quality.py --epochs 10                 # today's defaults, 10 epochs
    python benchmarks/time_to_quality.py --epochs 10 --reference     # ... and the pinned old recipe
    python benchmarks/time_to_quality.py --epochs 24 --reference --reference-epochs 30   # the issue's proof
    python benchmarks/time_to_quality.py --epochs 10 -- --seed 1     # trainer options after --
    python benchmarks/time_to_quality.py --quick                     # seconds: checks that it runs (CI)

The two runs take turns on the same CPU; run nothing else beside them (two CPU-heavy jobs on two cores
slow each other and the ratio becomes noise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REFERENCE_COMMIT = "caf265c5ab22bfa9a9d5f808468a303cfcd34659"  # main when the time-to-quality issue was filed
# caf265c's 30-epoch run, the bundled fp32 generator until 2026-12-07: test FID 5.139, 5.567, 5.292, 5.512
# and 5.670 at noise seeds 0-4 (mnist-gen score --n 10000 --seed S), whose mean is the quality to reach
OLD_BUNDLED_TEST_FID = 5.436
THRESHOLDS = (10.0, 7.0, OLD_BUNDLED_TEST_FID)
DRAWS = 5
QUICK = ["--limit", "512", "--g-width", "8", "--d-width", "8", "--eval-samples", "200"]


def reference_code(out: Path) -> Path | None:
    """The project's files at REFERENCE_COMMIT, unpacked into out/reference-code (python -m trainer runs there);
    None, with the reason on stderr, where this copy has no such history (an sdist, a shallow clone)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", REFERENCE_COMMIT], capture_output=True)
    if archive.returncode != 0:
        why = (archive.stderr.decode().strip().splitlines() or ["git archive failed"])[-1]
        print(f"error: --reference needs this project's git history (commit {REFERENCE_COMMIT[:7]}): {why}",
              file=sys.stderr)
        return None
    code = out / "reference-code"
    code.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    return code


def train(name: str, options: list[str], epochs: int, out: Path, code: Path = ROOT) -> Path:
    """One training run of the trainer in `code` into out/name, a checkpoint per epoch; its output goes to
    train.log. `python -m` puts `code` first on the path, so that folder's trainer is the one that runs."""
    run = out / name
    run.mkdir(parents=True)
    command = [sys.executable, "-m", "trainer", "--epochs", str(epochs), "--save-every", "1", "--device", "cpu",
               "--no-tensorboard", "--out", str(run), *options]
    print(f"+ (in {code}) {' '.join(command[1:])}", flush=True)
    with open(run / "train.log", "w") as log:
        result = subprocess.run(command, cwd=code, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"error: the {name} run failed (exit {result.returncode}); see {run / 'train.log'}")
    return run


def epoch_minutes(run: Path) -> dict[int, float]:
    """epoch -> the run's wall minutes at the end of that epoch's evaluation (metrics.jsonl)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["epoch"]: r["wall_s"] / 60 for r in records if "wall_s" in r and "epoch" in r}


def test_fids(run: Path, n: int, draws: int) -> dict[int, float]:
    """epoch -> test FID of that epoch's checkpoint, the mean of `draws` noise seeds, from
    `python -m trainer.report` (markdown rows)."""
    result = subprocess.run([sys.executable, "-m", "trainer.report", str(run), "--n", str(n), "--draws", str(draws)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: scoring {run} failed: {result.stderr.strip()[-300:]}")
    fids = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0].isdigit():
            fids[int(cells[0])] = float(cells[1])
    return fids


def first_reached(minutes: dict[int, float], fids: dict[int, float], threshold: float) -> float | None:
    return next((minutes[e] for e in sorted(fids) if fids[e] <= threshold and e in minutes), None)


def report(name: str, minutes: dict[int, float], fids: dict[int, float]) -> dict[float, float | None]:
    print(f"\n{name}\n| epoch | minutes | test FID (mean of the draws) |\n| --- | --- | --- |")
    for epoch in sorted(fids):
        print(f"| {epoch} | {minutes.get(epoch, float('nan')):.2f} | {fids[epoch]:.2f} |")
    reached = {t: first_reached(minutes, fids, t) for t in THRESHOLDS}
    for t, m in reached.items():
        print(f"test FID <= {t:g}: " + (f"{m:.2f} min" if m is not None else "not reached"))
    return reached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="options after -- go to python -m trainer")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (default 10)")
    parser.add_argument("--reference", action="store_true", help="also run the pinned old recipe and print ratios")
    parser.add_argument("--reference-epochs", type=int,
                        help="epochs of the reference run; its rate decay follows them (default --epochs)")
    parser.add_argument("--n", type=int, default=10_000, help="images per test-set score (default 10000)")
    parser.add_argument("--draws", type=int, default=DRAWS, help=f"noise seeds averaged per test FID (default {DRAWS})")
    parser.add_argument("--quick", action="store_true", help="a tiny run of both recipes, to check this script works")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args, options = parser.parse_known_args()
    options = [o for o in options if o != "--"]
    if args.quick:
        args.epochs, args.n, args.draws, args.reference, options = 1, 200, 1, True, QUICK + options
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        runs = {"default recipe": (options, ROOT, args.epochs)}
        if args.reference:
            code = reference_code(out)
            if code is None:
                return 2
            runs[f"reference: the trainer at {REFERENCE_COMMIT[:7]}"] = (options, code,
                                                                        args.reference_epochs or args.epochs)
        results = {}
        for i, (name, (opts, code, epochs)) in enumerate(runs.items()):
            run = train(f"run{i}", opts, epochs, out, code)
            minutes, fids = epoch_minutes(run), test_fids(run, args.n, args.draws)
            results[name] = (minutes, report(name, minutes, fids))
    if args.reference:
        (new_minutes, new), (old_minutes, old) = results.values()
        per_epoch = [m[max(m)] / max(m) for m in (old_minutes, new_minutes)]  # evaluations included
        print(f"\nminutes per epoch, reference / default: {per_epoch[0]:.2f} / {per_epoch[1]:.2f} = "
              f"{per_epoch[0] / per_epoch[1]:.2f}x")
        for t in THRESHOLDS:
            if new[t] is not None and old[t] is not None:
                print(f"time to test FID <= {t:g}, reference / default: {old[t] / new[t]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
