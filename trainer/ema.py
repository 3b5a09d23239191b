"""The weight average of G (--ema): what is evaluated, sampled and exported while G itself keeps training."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .model import Generator


class EMA:
    """An exponential moving average of G's weights, with BatchNorm statistics of its own.

    The decay ramps up to `decay` (as TensorFlow's ExponentialMovingAverage does with num_updates),
    so early in a run the average is not dragged down by the random weights of step 0.
    """

    def __init__(self, generator: Generator, decay: float, seed: int):
        self.model = copy.deepcopy(generator).requires_grad_(False)
        self.decay, self.seed = decay, seed

    @torch.no_grad()
    def update(self, live: Generator, step: int) -> None:
        """Move the average towards the live G, after G's step number `step` (0-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.model.parameters()), list(live.parameters()), 1.0 - decay)

    @torch.no_grad()
    def recalibrate(self, batches: int = 16, batch_size: int = 256) -> None:
        """Give the averaged weights BatchNorm statistics of their own, measured on fixed noise.

        The live G's running statistics describe the live weights' activations, not the averaged
        ones'. Deterministic (its own seeded noise), so resuming stays exact.
        """
        ema, cfg = self.model, self.model.cfg
        device = next(ema.parameters()).device
        norms = [m for m in ema.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over all the batches below
        noise = torch.Generator(device).manual_seed(self.seed)
        labels = torch.arange(batch_size, device=device) % max(cfg.num_classes, 1)
        ema.train()
        for _ in range(batches):
            z = torch.randn(batch_size, cfg.latent_dim, device=device, generator=noise)
            ema(z, labels if cfg.conditional else None)
        ema.eval()
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.model.load_state_dict(state_dict)
