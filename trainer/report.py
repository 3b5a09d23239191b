"""`python -m trainer.report RUN`: the test-set figures of a finished run, epoch by epoch, for reporting.

Training chooses its best epoch against the training images (trainer/evaluate.py) and never reads
the test set; this reads it afterwards, to report: each checkpoints/epoch_NNN.pt (the averaged G
when the run kept one) scored as `mnist-gen score --n N --seed 0` does, beside the selection FID
the run logged for that epoch. One markdown row per epoch.

One figure moves by up to half a point with the noise seed alone (docs/research/experiments.md, "How
precise one FID figure is"), so `--draws K` scores each checkpoint at noise seeds 0 to K-1 and prints
their mean and range: the figure to compare two recipes or two runs by.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from infer.errors import UserError
from infer.protocol import SCORE_IMAGES
from infer.score import load_scorer

from .checkpoint import generator_from_file, load_file
from .evaluate import Evaluator


def score_draws(evaluators: list[Evaluator], generator) -> dict:
    """The scores averaged over noise draws (one Evaluator per seed), with the FIDs' range."""
    draws = [evaluate(generator) for evaluate in evaluators]
    scores = {key: sum(d[key] for d in draws) / len(draws) for key in draws[0]}
    scores["fid_range"] = (min(d["fid"] for d in draws), max(d["fid"] for d in draws))
    return scores


def selection_fids(run: Path, key: str = "fid_train") -> dict[int, float]:
    """epoch -> the FID against the training images the run logged (fid_train chose its best epoch)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["epoch"]: r[key] for r in records if key in r}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.report", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run's --out folder (with checkpoints/epoch_NNN.pt)")
    parser.add_argument("--n", type=int, default=SCORE_IMAGES, help=f"images per score (default {SCORE_IMAGES})")
    parser.add_argument("--draws", type=int, default=1, help="noise seeds per score, 0 to K-1, averaged "
                        "(default 1: seed 0 alone, as mnist-gen score)")
    parser.add_argument("--live", action="store_true", help="score the live G of an --ema run, not the averaged one")
    parser.add_argument("--scorer", type=Path, help="a scorer folder for other data (default: RUN/scorer when there, "
                        "else the bundled MNIST one)")
    args = parser.parse_args(argv)
    try:
        if args.draws < 1:
            raise UserError(f"--draws must be at least 1, got {args.draws}")
        checkpoints = sorted((args.run / "checkpoints").glob("epoch_*.pt"))
        if not checkpoints:
            raise UserError(f"{args.run}: no checkpoints/epoch_NNN.pt (train with --save-every 1 for every epoch)")
        own = args.run / "scorer"
        session, test_stats = load_scorer(args.scorer or (own if own.is_dir() else None))
        evaluators = [Evaluator(session, test_stats, args.n, seed=seed) for seed in range(args.draws)]
        # runs before 2026-12-07 logged the live G's FID too; later ones score only the G they keep
        selection = selection_fids(args.run, "fid_live" if args.live else "fid_train")
        fid = "FID (test)" if args.draws == 1 else f"FID (test, mean of {args.draws} draws) | range"
        print(f"| epoch | {fid} | IS | conditional accuracy | diversity | FID vs training images (selection) |")
        print("| --- " * (6 + (args.draws > 1)) + "|")
        for path in checkpoints:
            checkpoint = load_file(path)
            if args.live and isinstance(checkpoint, dict):
                checkpoint = {**checkpoint, "generator_ema": None}  # generator_from_file then takes the live G
            generator, _ = generator_from_file(checkpoint, path)
            s = score_draws(evaluators, generator)
            epoch = int(re.search(r"\d+", path.stem).group())
            accuracy = f"{100 * s['conditional_accuracy']:.2f}%" if "conditional_accuracy" in s else "-"
            chosen = f"{selection[epoch]:.2f}" if epoch in selection else "-"
            spread = f" | {s['fid_range'][0]:.2f}-{s['fid_range'][1]:.2f}" if args.draws > 1 else ""
            print(f"| {epoch} | {s['fid']:.2f}{spread} | {s['inception_score']:.3f} | {accuracy} "
                  f"| {s['diversity']:.3f} | {chosen} |", flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
