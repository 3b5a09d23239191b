"""How the trainer's selection FID (against the training images) reads against the reported one (test set).

For one ONNX generator (default: the bundled fp32 one), prints its FID against the statistics of the
60,000 MNIST training images (what `python -m trainer` now selects epochs and measures time to
quality on) and against the test set (what `mnist-gen score` reports), and the real-data floor of
each: 10,000 real images that were not used for the reference. Run: python benchmarks/selection_fid.py
(--quick: 500 generated and 1,000 real images, the reference from 6,000 training images; it checks the script
runs, its figures are not the study's)
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from infer.generator import OnnxGenerator, resolve_model
from infer.score import classify, frechet_distance, load_scorer, score_generator
from trainer.classifier import floor_indices
from trainer.data import load_dataset
from trainer.evaluate import reference_stats


def floor_fid(session, images: np.ndarray, stats: dict) -> float:
    """FID of real uint8 images [N, H, W, 1] against `stats`."""
    _, features = classify(session, images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    features = np.asarray(features, np.float64)
    return frechet_distance(features.mean(axis=0), np.cov(features, rowvar=False), stats["mu"], stats["sigma"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fp32", help="an ONNX generator (default: the bundled fp32 one)")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a small run that checks the script works (seconds)")
    args = parser.parse_args()
    n, real = (500, 1000) if args.quick else (args.n, 10_000)
    session, test_stats = load_scorer()
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    reference = dataclasses.replace(train, images=train.images[:6000], labels=train.labels[:6000]) if args.quick \
        else train
    train_stats = reference_stats(session, reference, 10)
    # Real images not in the reference, 0-9 in turn as generators are scored (the shipped floor's draw); the test
    # set has too few fives for that, so the selection floor takes all its images at their own mix.
    floor_images = (test.images[floor_indices(test.labels, 10)[:real]],
                    train.images[floor_indices(train.labels, 10)[:real]])
    generator = OnnxGenerator.load(resolve_model(args.model), "cpu")
    for name, stats, held_out in (("training images (selection)", train_stats, floor_images[0]),
                                  ("test set (reported)", test_stats, floor_images[1])):
        fid = score_generator(generator.run, generator.latent_dim, generator.num_classes, stats, session,
                              n, 0)["fid"]
        print(f"FID vs {name:<28} generator {fid:8.3f}   real floor {floor_fid(session, held_out, stats):.3f}")


if __name__ == "__main__":
    main()
