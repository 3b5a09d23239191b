"""FID and friends during training, for model selection: against the training images, never the test set.

The computation is `mnist-gen score`'s (same classifier, noise and labels), but the reference
statistics are those of the images the run trains on, measured once when the run starts. The
test-set FID is left to `mnist-gen score` after training, so the figure reported there played
no part in choosing the epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from infer.errors import UserError
from infer.score import classify, feature_stats, load_classifier, score_generator, scorer_input

from .data import Dataset
from .model import Generator, ModelConfig, evaluating


def reference_stats(session, data: Dataset, num_classes: int, chunk: int = 5000) -> dict:
    """Feature statistics of the training images (uint8 [N, H, W, C]) to compare generated ones with."""
    logits, features = [], []
    for start in range(0, len(data.images), chunk):  # bounded float memory, whatever the set's size
        images = data.images[start : start + chunk].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
        batch_logits, batch_features = classify(session, images)  # as the trainer and the scorer see images
        logits.append(batch_logits)
        features.append(batch_features)
    labels = data.labels if data.labels is not None else np.concatenate(logits).argmax(axis=1)
    return feature_stats(np.concatenate(features), labels, num_classes)


class Evaluator:
    """Scores G on the noise and labels `mnist-gen score --n N --seed S` uses, against the given statistics."""

    def __init__(self, session, stats: dict, n: int = 10_000, seed: int = 0, batch_size: int = 500):
        self.session, self.stats = session, stats
        self.n, self.seed, self.batch_size = n, seed, batch_size

    @classmethod
    def for_run(cls, model_cfg: ModelConfig, data: Dataset, n: int = 10_000, scorer: Path | None = None) -> Evaluator:
        """The scorer's classifier (bundled MNIST, or `scorer`) with the training images as the reference.

        Only the classifier is read: its test-set statistics are not opened during training.
        """
        session = load_classifier(scorer)
        channels, classes = scorer_input(session)[0], session.get_outputs()[0].shape[1]
        where = scorer or "the bundled MNIST scorer"
        if channels != model_cfg.channels or (model_cfg.conditional and classes != model_cfg.num_classes):
            raise UserError(f"{where} reads {channels}-channel images of {classes} classes; this model makes "
                            f"{model_cfg.channels}-channel images of {model_cfg.num_classes} classes")
        return cls(session, reference_stats(session, data, classes), n)

    @torch.no_grad()
    def __call__(self, generator: Generator) -> dict:
        cfg = generator.cfg
        device = next(generator.parameters()).device

        def generate(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
            y = None if labels is None else torch.from_numpy(labels).to(device)
            return generator(torch.from_numpy(z).to(device), y).float().cpu().numpy()

        with evaluating(generator):
            scores = score_generator(generate, cfg.latent_dim, cfg.num_classes, self.stats, self.session,
                                     self.n, self.seed, self.batch_size)
        scores.pop("digit_share")
        return scores
