"""FID and friends during training: the very computation `mnist-gen score` does, on the G it is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from infer.errors import UserError
from infer.score import load_scorer, score_generator, scorer_input

from .model import Generator, ModelConfig, evaluating


class Evaluator:
    """Scores G on the noise and labels `mnist-gen score --n N --seed S` uses, so the figures agree."""

    def __init__(self, model_cfg: ModelConfig, n: int = 10_000, seed: int = 0, batch_size: int = 500,
                 scorer: Path | None = None):
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.session, self.stats = load_scorer(scorer)
        channels, classes = scorer_input(self.session)[0], len(self.stats["real_spread"])
        where = scorer or "the bundled MNIST scorer"
        if channels != model_cfg.channels or (model_cfg.conditional and classes != model_cfg.num_classes):
            raise UserError(f"{where} reads {channels}-channel images of {classes} classes; this model makes "
                            f"{model_cfg.channels}-channel images of {model_cfg.num_classes} classes")

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
