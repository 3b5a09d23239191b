"""Where the default run's time goes: the trainer's step with each part of the recipe taken out in turn, and the
cost of one epoch's evaluation, in one process on one machine, so the shares compare.

Rows (images/s of `run.step`, the weight average and the metrics reads at the default batch, through the
trainer's public set-up):
- "default recipe": what `python -m trainer` trains;
- "- X": the default recipe without one part (the auxiliary classifier, R1, the extra D block, the average,
  bf16 autocast), so 1 - default/row is that part's share of a step;
- "paper G/D": none of them, at the paper's widths (G and D 64 wide).
Then the seconds one end-of-epoch evaluation takes (10,000 images of the averaged G scored against the
training images), against the seconds of one epoch of steps.

    python benchmarks/step_costs.py            # 100 timed steps per row
    python benchmarks/step_costs.py --quick    # a few steps and 500 scored images: a smoke test (CI)

Run nothing else beside it: two CPU-heavy jobs on two cores slow each other and the shares become noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_speed import timed_steps  # noqa: E402  (benchmarks/, this script's folder)

from trainer.config import TrainConfig, load_training_data  # noqa: E402
from trainer.distributed import Distributed  # noqa: E402
from trainer.evaluate import score_epoch  # noqa: E402
from trainer.train import setup  # noqa: E402

WITHOUT = {
    "- auxiliary classifier (--aux-weight 0)": {"aux_weight": 0.0},
    "- R1 (--r1 0)": {"r1": 0.0},
    "- D's extra blocks (--d-blocks 0)": {"d_blocks": 0},
    "- weight average (--ema 0)": {"ema": 0.0},
    "- bf16 autocast (--precision fp32)": {"precision": "fp32"},
    "paper G/D": {"aux_weight": 0.0, "r1": 0.0, "d_blocks": 0, "ema": 0.0, "g_width": 64, "d_width": 64},
}


def measure(steps: int, warmup: int, eval_samples: int | None, **recipe) -> tuple[float, float | None, int]:
    """(images/s of the step, seconds of one end-of-epoch evaluation or None, steps per epoch)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(out=out, eval_every=1 if eval_samples else 0, eval_samples=eval_samples or 10_000,
                          device="cpu", tensorboard=False, **recipe)
        data = load_training_data(cfg)
        cfg = cfg.for_data(data)
        run = setup(cfg, data, Distributed())
        images_per_s = timed_steps(run, steps, warmup)
        evaluation = None
        if eval_samples:
            start = time.perf_counter()
            if run.ema is not None:
                run.ema.recalibrate()
            score_epoch(run.evaluator, run.sampler)
            evaluation = time.perf_counter() - start
        return images_per_s, evaluation, run.batches.steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps per row, 500 scored images")
    parser.add_argument("--steps", type=int, help="timed steps per row (default 100)")
    args = parser.parse_args()
    steps, warmup = (3, 1) if args.quick else (args.steps or 100, 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} timed steps per row after {warmup}")
    default, evaluation, per_epoch = measure(steps, warmup, 500 if args.quick else 10_000)
    print(f"{'default recipe':<42} {default:8.1f} images/s")
    for name, recipe in WITHOUT.items():
        images_per_s, _, _ = measure(steps, warmup, None, **recipe)
        print(f"{name:<42} {images_per_s:8.1f} images/s  ({1 - default / images_per_s:+.0%} of a default step)")
    epoch_s = per_epoch * TrainConfig.batch_size / default
    share = evaluation / (epoch_s + evaluation)
    print(f"one epoch of default steps: {epoch_s:.1f} s; its end-of-epoch evaluation (the averaged G, "
          f"{500 if args.quick else 10_000} images): {evaluation:.1f} s ({share:.0%} of the epoch)")


if __name__ == "__main__":
    main()
