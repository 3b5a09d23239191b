"""FID and friends during training: the very computation `mnist-gen score` does, on the G it is given."""

from __future__ import annotations

import numpy as np
import torch

from infer.score import load_scorer, score_generator

from .model import Generator, evaluating


class Evaluator:
    """Scores G on the noise and labels `mnist-gen score --n N --seed S` uses, so the figures agree."""

    def __init__(self, n: int = 10_000, seed: int = 0, batch_size: int = 500):
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.session, self.stats = load_scorer()

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
