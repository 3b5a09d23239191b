"""FID and friends during training, for model selection: against the training images, never the test set.

The computation is `mnist-gen score`'s (same classifier, noise and labels), but the reference
statistics are those of the images the run trains on, measured once when the run starts. The
test-set FID is left to `mnist-gen score` after training, so the figure reported there played
no part in choosing the epoch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from infer.protocol import SCORE_BATCH, SCORE_IMAGES, SCORE_SEED
from infer.score import CLASSIFIER, check_scorer_fits, classify, feature_stats, load_classifier, score_generator

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

    def __init__(self, session, stats: dict, n: int = SCORE_IMAGES, seed: int = SCORE_SEED,
                 batch_size: int = SCORE_BATCH):
        self.session, self.stats = session, stats
        self.n, self.seed, self.batch_size = n, seed, batch_size

    @classmethod
    def for_run(cls, model_cfg: ModelConfig, data: Dataset, n: int = SCORE_IMAGES,
                scorer: Path | None = None) -> Evaluator:
        """The scorer's classifier (bundled MNIST, or `scorer`) with the training images as the reference.

        Only the classifier is read: its test-set statistics are not opened during training.
        """
        session = load_classifier(scorer)
        check_scorer_fits(session, model_cfg.channels, model_cfg.num_classes, str(scorer or "the bundled MNIST scorer"))
        classes = session.get_outputs()[0].shape[1]
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


def evaluator_for_run(cfg, model_cfg: ModelConfig, data: Dataset, out: Path) -> Evaluator | None:
    """FID needs a scorer for this data: OUT/scorer (python -m trainer.classifier), or the bundled MNIST one.

    Its reference is the training images, so choosing the best epoch never looks at the test set.
    None (with a note) where no scorer fits the data.
    """
    own = out / "scorer"
    if (own / CLASSIFIER.name).is_file():
        return Evaluator.for_run(model_cfg, data, cfg.eval_samples, scorer=own)
    if cfg.dataset == "mnist" and cfg.channels == 1:
        return Evaluator.for_run(model_cfg, data, cfg.eval_samples)
    print(f"note: no scorer for {cfg.dataset} data, so no FID or best-epoch selection; build one "
          f"with python -m trainer.classifier --dataset {cfg.dataset} --data-dir DIR --out {own}", file=sys.stderr)
    return None


def score_epoch(evaluator: Evaluator, sampler: Generator) -> dict:
    """The selection FID of the G users get (the averaged one under --ema) against the training images.

    Only that G: scoring the live G beside it cost half of each epoch's evaluation, and the live G is never
    kept; `python -m trainer.report RUN --live` scores it from the checkpoints when wanted."""
    scores = evaluator(sampler)
    scores["fid_train"] = scores.pop("fid")  # against the training images: selection, not the report
    return scores


def select(state, scores: dict, epoch: int, quality_fid: float) -> bool:
    """Record an epoch's scores in the run's state: time-to-quality, and whether it is the best epoch so far."""
    if not state.quality_epoch and scores["fid_train"] <= quality_fid:
        state.quality_epoch, state.quality_wall_s = epoch, state.wall_s
        scores["time_to_quality_s"] = state.wall_s
    improved = scores["fid_train"] < state.best_fid
    if improved:
        state.best_fid, state.best_epoch = scores["fid_train"], epoch
    return improved
