"""The MNIST classifier that scores generators: `python -m trainer.classifier`.

Trains a small CNN on MNIST, checks its test accuracy, exports it to ONNX (outputs: logits and the
penultimate features) and writes the statistics `mnist-gen score` compares against: the mean and
covariance of the features over the MNIST test set, the per-digit feature spread of real images,
and the scores of 10,000 real training images (the floor a perfect generator would reach).
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
from infer.score import CLASSIFIER, FEATURES_OUTPUT, LOGITS_OUTPUT, STATS, feature_stats, score_features

from .data import load_mnist, to_training_tensor

TARGET_ACCURACY = 0.993


class Classifier(nn.Module):
    """Two conv blocks and a 128-unit feature layer: >= 99.3% on MNIST in a few CPU minutes."""

    def __init__(self, features: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, features), nn.ReLU(True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(features, 10))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [N, 1, 28, 28] in [-1, 1] -> (logits [N, 10], features [N, 128])."""
        features = self.body(images)
        return self.head(features), features


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    outputs = [model(images[i : i + batch]) for i in range(0, len(images), batch)]
    logits = torch.cat([o[0] for o in outputs]).float().numpy()
    features = torch.cat([o[1] for o in outputs]).float().numpy()
    return logits, features


def train(epochs: int, seed: int, batch_size: int = 128) -> tuple[Classifier, float]:
    torch.manual_seed(seed)
    images, labels = load_mnist("train")
    x = to_training_tensor(images, 28, torch.device("cpu"))
    y = torch.from_numpy(labels.astype(np.int64))
    test_images, test_labels = load_mnist("test")
    x_test = to_training_tensor(test_images, 28, torch.device("cpu"))
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=g)
        for i in range(len(x) // batch_size):
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
        logits, _ = predict(model, x_test)
        accuracy = float((logits.argmax(1) == test_labels).mean())
        print(f"epoch {epoch}/{epochs}: test accuracy {accuracy:.4f} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
    return model.eval(), accuracy


def export_onnx(model: Classifier, path: Path) -> None:
    example = torch.zeros(2, 1, 28, 28)
    program = torch.onnx.export(
        model, (example,), dynamo=True, opset_version=18, input_names=["images"],
        output_names=[LOGITS_OUTPUT, FEATURES_OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False, verbose=False,
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(program.model_proto.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.classifier", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CLASSIFIER.parent,
                        help=f"folder for the files (default {CLASSIFIER.parent}, where mnist-gen score reads them)")
    args = parser.parse_args(argv)
    try:
        model, accuracy = train(args.epochs, args.seed)
        if accuracy < TARGET_ACCURACY:
            raise UserError(f"test accuracy {accuracy:.4f} is below {TARGET_ACCURACY}; nothing written")
        test_images, test_labels = load_mnist("test")
        _, test_features = predict(model, to_training_tensor(test_images, 28, torch.device("cpu")))
        train_images, train_labels = load_mnist("train")
        floor_logits, floor_features = predict(model, to_training_tensor(train_images[:10000], 28,
                                                                          torch.device("cpu")))
        stats = feature_stats(test_features, test_labels)
        floor = score_features(floor_logits, floor_features, train_labels[:10000], stats)
        args.out.mkdir(parents=True, exist_ok=True)
        export_onnx(model, args.out / CLASSIFIER.name)
        buffer = io.BytesIO()
        np.savez(buffer, **stats, accuracy=accuracy, **{f"floor_{k}": v for k, v in floor.items()})
        with atomic_path(args.out / STATS.name) as tmp:
            tmp.write_bytes(buffer.getvalue())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"test accuracy {accuracy:.4f}; real-data floor on 10k training images: FID {floor['fid']:.3f}, "
          f"IS {floor['inception_score']:.3f}; wrote {args.out / CLASSIFIER.name} and {STATS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
