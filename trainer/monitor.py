"""What the user watches: running metrics kept on the device, and a health verdict per log point."""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import nn

from .distributed import Distributed

GREEN, YELLOW, RED = "green", "yellow", "red"
METRIC_NAMES = ("loss_d", "loss_g", "d_x", "d_gz")
AUX_ACCURACY = "aux_acc"  # --aux-weight: the share of G's images D's classifier reads as the digit asked for


class RunningMetrics:
    """Sums of per-step metrics on the training device: no host sync until `read()`."""

    def __init__(self, device: torch.device, names: tuple[str, ...] = METRIC_NAMES):
        self.names = names
        self.sums = torch.zeros(len(names), device=device)
        self.nonfinite = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0

    def add(self, *values: torch.Tensor) -> None:
        values = torch.stack(values).detach().float()
        self.sums += values
        self.nonfinite += (~torch.isfinite(values)).any()
        self.count += 1

    def read(self, dist: Distributed | None = None, **extra: torch.Tensor) -> tuple[dict, int]:
        """Means since the last read, the `extra` scalars (device tensors) beside them, and how many of those steps
        had a non-finite value: one device-to-host transfer per log point.

        Under torchrun: the mean over the ranks, and the most non-finite steps any rank had, so every
        rank logs (and stops on) the same figures.
        """
        means, nonfinite = self.sums / max(self.count, 1), self.nonfinite
        if extra:
            means = torch.cat([means, torch.stack([v.float() for v in extra.values()])])
        if dist is not None:
            means, nonfinite = dist.mean(means), dist.max(nonfinite)
        *values, nonfinite = torch.cat([means, nonfinite.view(1).to(means.dtype)]).tolist()
        self.sums.zero_()
        self.nonfinite.zero_()
        self.count = 0
        return dict(zip(self.names + tuple(extra), values, strict=True)), int(nonfinite)


@torch.no_grad()
def within_class_spread(images: torch.Tensor, labels: torch.Tensor | None, num_classes: int = 0) -> torch.Tensor:
    """Mean per-pixel std across images of the same label (all images when unconditional), on the device.

    A generator that draws one image per digit (mode collapse) drives this towards 0. Classes with
    fewer than two images in the batch are left out; NaN when none has two.
    """
    images = images.detach().float().flatten(1)
    if labels is None:
        return images.std(dim=0).mean()
    members = nn.functional.one_hot(labels, num_classes).T.float()  # [classes, images]
    counts = members.sum(1)
    means = members @ images / counts.clamp(min=1)[:, None]
    variances = members @ (images - means[labels]) ** 2 / (counts - 1).clamp(min=1)[:, None]
    spreads = variances.sqrt().mean(1)
    present = counts > 1
    return (spreads * present).sum() / present.sum()  # 0/0 = NaN when no class has two images


class Health:
    """Green = healthy, yellow = warning, red = failure; with the reason in words.

    What "D has won" and "D stuck" mean depends on the loss (trainer/losses.py): a probability near
    1 and 0 for bce, both margins passed for hinge, a large Wasserstein estimate for wgan-gp.
    """

    def __init__(self, loss, window: int = 3):
        self.loss, self.window = loss, window
        self.recent = deque(maxlen=2 * window)

    def update(self, m: dict) -> tuple[str, str]:
        self.recent.append(m)
        if not all(math.isfinite(m[k]) for k in METRIC_NAMES):
            return RED, "non-finite loss"
        if self.loss.d_loss_floor is not None and m["loss_d"] < self.loss.d_loss_floor:
            return RED, "D loss stuck near 0"
        diversity = m.get("pixel_diversity")
        if diversity is not None and diversity < 0.15:
            return RED, "samples collapsed to near-identical images"
        last = list(self.recent)[-self.window :]
        if len(last) == self.window and all(self.loss.winning(r["d_x"], r["d_gz"]) for r in last):
            return YELLOW, self.loss.winning_text
        if len(self.recent) == 2 * self.window:
            before = sum(r["loss_g"] for r in list(self.recent)[: self.window]) / self.window
            now = sum(r["loss_g"] for r in last) / self.window
            if now > 1.5 * before and now > 3.0:
                return YELLOW, "G loss climbing"
        if diversity is not None and diversity < 0.4:
            return YELLOW, "low sample diversity"
        return GREEN, "ok"
