"""FID and friends during training: the very computation `mnist-gen score` does, on the live G."""

from __future__ import annotations

import numpy as np
import torch

from infer.score import classify, load_scorer, score_features

from .model import Generator


class Evaluator:
    """Scores G on the noise and labels `mnist-gen score --n N --seed S` uses, so the figures agree."""

    def __init__(self, n: int = 10_000, seed: int = 0, batch_size: int = 500):
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.session, self.stats = load_scorer()

    @torch.no_grad()
    def __call__(self, generator: Generator) -> dict:
        cfg = generator.cfg
        device = next(generator.parameters()).device
        was_training = generator.training
        generator.eval()
        rng = np.random.default_rng(self.seed)
        labels = np.arange(self.n, dtype=np.int64) % cfg.num_classes if cfg.conditional else None
        logits, features = [], []
        for start in range(0, self.n, self.batch_size):
            count = min(self.batch_size, self.n - start)
            z = torch.from_numpy(rng.standard_normal((count, cfg.latent_dim), dtype=np.float32)).to(device)
            y = None if labels is None else torch.from_numpy(labels[start : start + count]).to(device)
            images = generator(z, y).float().cpu().numpy()
            batch_logits, batch_features = classify(self.session, images)
            logits.append(batch_logits)
            features.append(batch_features)
        generator.train(was_training)
        scores = score_features(np.concatenate(logits), np.concatenate(features), labels, self.stats)
        scores.pop("digit_share")
        return scores
