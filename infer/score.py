"""Torch-free scores for a generator, on the features of the project's own MNIST classifier.

- FID: Frechet distance between Gaussians fitted to classifier features of generated images and of
  the MNIST test set (matrix square root by eigen-decomposition; numpy only).
- Inception Score: exp(E[KL(p(y|x) || p(y))]) with the classifier's p(y|x).
- digit shares, and for conditional models the conditional accuracy (classifier agrees with the label).
- diversity: within-digit feature spread of generated images over that of real ones (1 = as varied
  as real digits; near 0 = one image per digit, the intra-class collapse IS and accuracy miss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .generator import generate_batches

ASSETS = Path(__file__).parent / "assets"
CLASSIFIER = ASSETS / "classifier.onnx"
STATS = ASSETS / "classifier_stats.npz"
LOGITS_OUTPUT, FEATURES_OUTPUT = "logits", "features"
NUM_CLASSES = 10


def _spread(features: np.ndarray) -> float:
    """Root mean square distance between two random members of the set."""
    features = np.asarray(features, np.float64)
    return float(np.sqrt(2.0 * features.var(axis=0, ddof=1).sum())) if len(features) > 1 else float("nan")


def feature_stats(features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """What generated features are compared with: mean, covariance, per-digit spread of real images."""
    features = np.asarray(features, np.float64)
    return {
        "mu": features.mean(axis=0),
        "sigma": np.cov(features, rowvar=False),
        "real_spread": np.array([_spread(features[labels == d]) for d in range(NUM_CLASSES)]),
    }


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), with tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2)."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


def score_features(logits: np.ndarray, features: np.ndarray, labels: np.ndarray | None, stats: dict) -> dict:
    """All scores from classifier outputs; `labels` are the requested digits (None: unconditional)."""
    if len(features) <= features.shape[1]:
        raise UserError(f"need more than {features.shape[1]} images for a feature covariance, got {len(features)}")
    features = np.asarray(features, np.float64)
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    marginal = probs.mean(axis=0)
    kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
    predicted = probs.argmax(axis=1)
    groups = labels if labels is not None else predicted
    ratios = [_spread(features[groups == d]) / stats["real_spread"][d] for d in range(NUM_CLASSES)
              if (groups == d).sum() > 1]
    result = {
        "fid": frechet_distance(features.mean(axis=0), np.cov(features, rowvar=False), stats["mu"], stats["sigma"]),
        "inception_score": float(np.exp(kl.mean())),
        "digit_share": np.bincount(predicted, minlength=NUM_CLASSES) / len(predicted),
        "diversity": float(np.mean(ratios)) if ratios else float("nan"),
    }
    if labels is not None:
        result["conditional_accuracy"] = float((predicted == labels).mean())
    return result


def load_scorer():
    """(classifier session, stats) from the files bundled in the package."""
    import onnxruntime as ort

    if not (CLASSIFIER.is_file() and STATS.is_file()):
        raise UserError(f"the scoring classifier is missing ({CLASSIFIER}); build it with python -m trainer.classifier")
    with np.load(STATS) as data:
        stats = {k: data[k] for k in data.files}
    return ort.InferenceSession(str(CLASSIFIER), providers=["CPUExecutionProvider"]), stats


def score_generator(generate, latent_dim: int, num_classes: int, stats: dict, session,
                    n: int = 10_000, seed: int = 0, batch_size: int = 500) -> dict:
    """Score any generator on fixed noise: `generate(z, labels) -> images [N, 1, 28, 28]` (numpy).

    `mnist-gen score` (onnxruntime) and the trainer (torch) both come through here, so for the same
    weights, n and seed they draw the same z and labels and report the same figures.
    """
    labels = np.arange(n, dtype=np.int64) % num_classes if num_classes else None
    logits, features = [], []
    for _, images in generate_batches(generate, latent_dim, n, seed, labels, batch_size):
        batch_logits, batch_features = classify(session, images)
        logits.append(batch_logits)
        features.append(batch_features)
    return score_features(np.concatenate(logits), np.concatenate(features), labels, stats)


def classify(session, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """images float32 [N, 1, 28, 28] in [-1, 1] -> (logits, features)."""
    outputs = [session.run([LOGITS_OUTPUT, FEATURES_OUTPUT], {"images": images[i : i + batch_size]})
               for i in range(0, len(images), batch_size)]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])
