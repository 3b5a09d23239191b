"""Torch-free scores for a generator, on the features of a classifier trained for its data.

The bundled scorer (infer/assets) is the project's MNIST classifier; `python -m trainer.classifier
--dataset ...` builds one for other data, and `load_scorer(folder)` reads it.

- FID: Frechet distance between Gaussians fitted to classifier features of generated images and of
  the real test images (matrix square root by eigen-decomposition; numpy only). Images of another
  size than the classifier's input are resized to it first (an MNIST model at 32 or 64 px).
- Inception Score: exp(E[KL(p(y|x) || p(y))]) with the classifier's p(y|x).
- digit shares, and for conditional models the conditional accuracy (classifier agrees with the label).
- diversity: within-digit feature spread of generated images over that of real ones (1 = as varied
  as real digits; near 0 = one image per digit, the intra-class collapse IS and accuracy miss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError, first_line
from .generator import generate_batches
from .protocol import SCORE_BATCH, SCORE_IMAGES, SCORE_SEED

ASSETS = Path(__file__).parent / "assets"
CLASSIFIER = ASSETS / "classifier.onnx"
STATS = ASSETS / "classifier_stats.npz"
LOGITS_OUTPUT, FEATURES_OUTPUT = "logits", "features"


def _spread(features: np.ndarray) -> float:
    """Root mean square distance between two random members of the set."""
    features = np.asarray(features, np.float64)
    return float(np.sqrt(2.0 * features.var(axis=0, ddof=1).sum())) if len(features) > 1 else float("nan")


def feature_stats(features: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """What generated features are compared with: mean, covariance, per-class spread of real images."""
    features = np.asarray(features, np.float64)
    return {
        "mu": features.mean(axis=0),
        "sigma": np.cov(features, rowvar=False),
        "real_spread": np.array([_spread(features[labels == d]) for d in range(num_classes)]),
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
    num_classes = len(stats["real_spread"])
    ratios = [_spread(features[groups == d]) / stats["real_spread"][d] for d in range(num_classes)
              if (groups == d).sum() > 1]
    result = {
        "fid": frechet_distance(features.mean(axis=0), np.cov(features, rowvar=False), stats["mu"], stats["sigma"]),
        "inception_score": float(np.exp(kl.mean())),
        "digit_share": np.bincount(predicted, minlength=num_classes) / len(predicted),
        "diversity": float(np.mean(ratios)) if ratios else float("nan"),
    }
    if labels is not None:
        result["conditional_accuracy"] = float((predicted == labels).mean())
    return result


def load_classifier(folder: str | Path | None = None):
    """The scorer's classifier alone (an onnxruntime session): from `folder`, else the bundled MNIST one."""
    import onnxruntime as ort

    classifier = (Path(folder) if folder is not None else CLASSIFIER.parent) / CLASSIFIER.name
    if not classifier.is_file():
        raise UserError(f"no scorer in {classifier.parent} ({CLASSIFIER.name} and {STATS.name}); build one with "
                        "python -m trainer.classifier")
    try:
        return ort.InferenceSession(str(classifier), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises many types for a bad file
        raise UserError(f"scorer {classifier} cannot be read ({first_line(e, 120)})") from None


def load_scorer(folder: str | Path | None = None):
    """(classifier session, test-set stats) from `folder` (python -m trainer.classifier --out), else the bundled."""
    session = load_classifier(folder)
    stats_file = (Path(folder) if folder is not None else STATS.parent) / STATS.name
    if not stats_file.is_file():
        raise UserError(f"no scorer in {stats_file.parent} ({CLASSIFIER.name} and {STATS.name}); build one with "
                        "python -m trainer.classifier")
    try:
        with np.load(stats_file, allow_pickle=False) as data:
            stats = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise UserError(f"scorer statistics {stats_file} cannot be read ({first_line(e, 120)})") from None
    return session, stats


def scorer_input(session) -> tuple[int, int]:
    """(channels, size) of the images the classifier reads."""
    shape = session.get_inputs()[0].shape
    return int(shape[1]), int(shape[2])


def check_scorer_fits(session, channels: int, num_classes: int, where: str = "the scorer") -> None:
    """Refuse a scorer that cannot judge this model: images of other channels, or (conditional) other classes."""
    scorer_channels = scorer_input(session)[0]
    classes = next(o.shape[1] for o in session.get_outputs() if o.name == LOGITS_OUTPUT)
    if scorer_channels != channels or (num_classes and classes != num_classes):
        raise UserError(f"{where} reads {scorer_channels}-channel images of {classes} classes; this model draws "
                        f"{channels}-channel images of {num_classes} classes (--scorer DIR)")


def fit_to(images: np.ndarray, size: int) -> np.ndarray:
    """Resize float images [N, C, H, W] to [N, C, size, size] (Pillow's antialiased bilinear), torch-free."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    from PIL import Image

    out = np.empty((*images.shape[:2], size, size), np.float32)
    for i, image in enumerate(images):
        for c, plane in enumerate(image):
            out[i, c] = np.asarray(Image.fromarray(plane.astype(np.float32)).resize(
                (size, size), Image.Resampling.BILINEAR))
    return out


def requested_labels(n: int, num_classes: int) -> np.ndarray | None:
    """The labels a conditional generator is scored on: 0, 1, ..., num_classes - 1 in turn (None: unconditional)."""
    return np.arange(n, dtype=np.int64) % num_classes if num_classes else None


def score_generator(generate, latent_dim: int, num_classes: int, stats: dict, session,
                    n: int = SCORE_IMAGES, seed: int = SCORE_SEED, batch_size: int = SCORE_BATCH) -> dict:
    """Score any generator on fixed noise: `generate(z, labels) -> images [N, C, H, W]` (numpy).

    `mnist-gen score` (onnxruntime) and the trainer (torch) both come through here, so for the same
    weights, n and seed they draw the same z and labels and report the same figures.
    """
    labels = requested_labels(n, num_classes)
    logits, features = [], []
    for _, images in generate_batches(generate, latent_dim, n, seed, labels, batch_size):
        batch_logits, batch_features = classify(session, images)
        logits.append(batch_logits)
        features.append(batch_features)
    return score_features(np.concatenate(logits), np.concatenate(features), labels, stats)


def classify(session, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """images float32 [N, C, H, W] in [-1, 1] (resized to the classifier's input) -> (logits, features)."""
    images = fit_to(np.asarray(images, np.float32), scorer_input(session)[1])
    outputs = [session.run([LOGITS_OUTPUT, FEATURES_OUTPUT], {"images": images[i : i + batch_size]})
               for i in range(0, len(images), batch_size)]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])
