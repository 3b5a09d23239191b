"""The classifier that scores generators: `python -m trainer.classifier [--dataset NAME --data-dir DIR]`.

Trains a small CNN on the data, checks its accuracy on the test split (a seeded tenth held out when
the data has none, as a folder), exports it to ONNX (outputs: logits and the penultimate features)
and writes the statistics `mnist-gen score` compares against: the mean and covariance of the
features over the test images, the per-class feature spread of real images, and the scores of
10,000 real training images asked for the way generators are (the floor a perfect generator would
reach: `floor_indices`). For MNIST it rebuilds the
bundled scorer (infer/assets); for other data it writes OUT/scorer/, where the trainer's per-epoch
FID and `mnist-gen score --scorer` find it.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infer.errors import UserError
from infer.files import atomic_path
from infer.protocol import SCORE_IMAGES, SCORE_SEED
from infer.score import (
    CLASSIFIER,
    FEATURES_OUTPUT,
    LOGITS_OUTPUT,
    STATS,
    feature_stats,
    requested_labels,
    score_features,
)

from .data import DATASETS, Dataset, load_dataset, to_float

MNIST_TARGET_ACCURACY = 0.993


class Classifier(nn.Module):
    """Two conv blocks and a 128-unit feature layer: >= 99.3% on MNIST in a few CPU minutes."""

    def __init__(self, channels: int = 1, num_classes: int = 10, features: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7),  # 28 px: already 7x7; 32 or 64 px: pooled to it
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, features), nn.ReLU(True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(features, num_classes))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [N, C, H, W] in [-1, 1] -> (logits [N, classes], features [N, 128])."""
        features = self.body(images)
        return self.head(features), features


@torch.no_grad()
def predict(model: Classifier, images: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W, C] -> (logits, features)."""
    model.eval()
    outputs = [model(to_float(torch.from_numpy(images[i : i + batch].copy()))) for i in range(0, len(images), batch)]
    logits = torch.cat([o[0] for o in outputs]).float().numpy()
    features = torch.cat([o[1] for o in outputs]).float().numpy()
    return logits, features


def floor_indices(labels: np.ndarray, num_classes: int, n: int = SCORE_IMAGES, seed: int = SCORE_SEED) -> np.ndarray:
    """Up to n real images, drawn at random (seeded), with the labels a generator is scored on, so the floor
    is what a perfect generator scores: MNIST's first images are no fair sample, and its own class mix scores
    lower than 0-9 in turn (measured: docs/experiments.md, "How precise one FID figure is"). A random n at the
    data's own mix when a class runs short."""
    n = min(n, len(labels))
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    wanted = requested_labels(n, num_classes)
    picked = shuffled[:n].copy()
    for c in range(num_classes):
        slots, of_class = np.flatnonzero(wanted == c), shuffled[labels[shuffled] == c]
        if len(of_class) < len(slots):
            return shuffled[:n]
        picked[slots] = of_class[: len(slots)]
    return picked


def splits(name: str, data_dir: str | None, image_size: int | None, seed: int) -> tuple[Dataset, Dataset]:
    """(train, test): the data set's own test split, or a seeded tenth held out of it."""
    train_set = load_dataset(name, "train", data_dir, image_size)
    if train_set.labels is None:
        raise UserError(f"{data_dir}: a scorer needs classes (one subfolder per class); this data has none")
    if name != "folder":
        return train_set, load_dataset(name, "test", data_dir, image_size, train_set.channels)
    order = np.random.default_rng(seed).permutation(len(train_set.images))
    held_out, kept = order[: len(order) // 10], order[len(order) // 10 :]
    if len(held_out) < 2 * train_set.num_classes:
        raise UserError(f"{data_dir}: {len(order)} images are too few to hold out a test tenth for a scorer")

    def part(idx):
        return Dataset(name, train_set.images[idx], train_set.labels[idx], train_set.class_names)

    return part(kept), part(held_out)


def train(train_set: Dataset, test_set: Dataset, epochs: int, seed: int,
          batch_size: int = 128) -> tuple[Classifier, float]:
    torch.manual_seed(seed)
    x = to_float(torch.from_numpy(train_set.images.copy()))
    y = torch.from_numpy(train_set.labels)
    model = Classifier(train_set.channels, train_set.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * max(1, len(x) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=g)
        for i in range(max(1, len(x) // batch_size)):
            idx = order[i * batch_size : (i + 1) * batch_size]
            batch = x[idx]
            # a little augmentation: shift by up to 2 pixels
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
            batch = torch.roll(batch, shifts=(dy, dx), dims=(2, 3))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits, _ = model(batch)
            loss = nn.functional.cross_entropy(logits.float(), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        logits, _ = predict(model, test_set.images)
        accuracy = float((logits.argmax(1) == test_set.labels).mean())
        print(f"epoch {epoch}/{epochs}: test accuracy {accuracy:.4f} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
    return model.eval(), accuracy


def export_onnx(model: Classifier, path: Path, channels: int, size: int) -> None:
    example = torch.zeros(2, channels, size, size)
    program = torch.onnx.export(
        model, (example,), dynamo=True, opset_version=18, input_names=["images"],
        output_names=[LOGITS_OUTPUT, FEATURES_OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False, verbose=False,
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(program.model_proto.SerializeToString())


def build_scorer(name: str, data_dir: str | None, out: Path, epochs: int, seed: int,
                 image_size: int | None = None) -> tuple[float, dict]:
    """Train, check and write OUT/classifier.onnx and OUT/classifier_stats.npz. Returns (accuracy, floor)."""
    train_set, test_set = splits(name, data_dir, image_size, seed)
    model, accuracy = train(train_set, test_set, epochs, seed)
    if name == "mnist" and accuracy < MNIST_TARGET_ACCURACY:
        raise UserError(f"test accuracy {accuracy:.4f} is below {MNIST_TARGET_ACCURACY}; nothing written")
    _, test_features = predict(model, test_set.images)
    real = floor_indices(train_set.labels, train_set.num_classes)
    floor_logits, floor_features = predict(model, train_set.images[real])
    stats = feature_stats(test_features, test_set.labels, test_set.num_classes)
    floor = score_features(floor_logits, floor_features, train_set.labels[real], stats)
    about = {"dataset": np.array(name), "class_names": np.array(train_set.class_names),
             "channels": np.array(train_set.channels), "image_size": np.array(train_set.images.shape[1])}
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out / CLASSIFIER.name, train_set.channels, train_set.images.shape[1])
    buffer = io.BytesIO()
    np.savez(buffer, **stats, **about, accuracy=accuracy, **{f"floor_{k}": v for k, v in floor.items()})
    with atomic_path(out / STATS.name) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return accuracy, floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.classifier", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)} (default mnist)")
    parser.add_argument("--data-dir", help="where the data set's files are (MNIST: the bundled copy unless given)")
    parser.add_argument("--image-size", type=int, help="the classifier's input size (default: the data's own)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help=f"folder for the files (default: {CLASSIFIER.parent} for MNIST, "
                        "where mnist-gen score reads them; artifacts/scorer otherwise, where the trainer looks)")
    args = parser.parse_args(argv)
    out = args.out or (CLASSIFIER.parent if args.dataset == "mnist" else Path("artifacts") / "scorer")
    try:
        if args.dataset not in DATASETS:
            raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {args.epochs}")
        accuracy, floor = build_scorer(args.dataset, args.data_dir, out, args.epochs, args.seed, args.image_size)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"test accuracy {accuracy:.4f}; real-data floor on up to 10k training images, classes in turn: "
          f"FID {floor['fid']:.3f}, IS {floor['inception_score']:.3f}; wrote {out / CLASSIFIER.name} "
          f"and {out / STATS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
