"""Latent-space helpers (numpy only), shared by `mnist-gen interpolate` and the trainer's plots."""

from __future__ import annotations

import numpy as np


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Spherical interpolation from a to b in `steps` points, both ends included: [steps, dim] float32.

    Gaussian noise vectors live near a sphere, so walking along it keeps every point typical.
    """
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    cos = float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * a + t * b).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)
