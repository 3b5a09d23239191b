"""FID and friends during training, for model selection: against the training images, never the test set.

The computation is `mnist-gen score`'s (same classifier, noise and labels), but the reference
statistics are those of the images the run trains on, measured once when the run starts. The
test-set FID is left to `mnist-gen score` after training, so the figure reported there played
no part in choosing the epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from infer.errors import UserError
from infer.score import CLASSIFIER, classify, feature_stats, score_generator

from .model import Generator, evaluating


def classifier_session():
    import onnxruntime as ort

    if not CLASSIFIER.is_file():
        raise UserError(f"the scoring classifier is missing ({CLASSIFIER}); build it with python -m trainer.classifier")
    return ort.InferenceSession(str(CLASSIFIER), providers=["CPUExecutionProvider"])


def reference_stats(session, images: np.ndarray, labels: np.ndarray) -> dict:
    """Feature statistics of real digits (uint8 [N, 28, 28]) to compare generated ones with."""
    scaled = (images.astype(np.float32) / 127.5 - 1.0)[:, None]  # as the trainer and the scorer see digits
    _, features = classify(session, scaled)
    return feature_stats(features, labels)


class Evaluator:
    """Scores G on the noise and labels `mnist-gen score --n N --seed S` uses, against the given statistics."""

    def __init__(self, session, stats: dict, n: int = 10_000, seed: int = 0, batch_size: int = 500):
        self.session, self.stats = session, stats
        self.n, self.seed, self.batch_size = n, seed, batch_size

    @classmethod
    def on_training_images(cls, images: np.ndarray, labels: np.ndarray, n: int = 10_000) -> Evaluator:
        session = classifier_session()
        return cls(session, reference_stats(session, images, labels), n)

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
