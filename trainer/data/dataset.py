"""What every reader returns, and how the training loop reads it: uint8 images held in memory, batched by index."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..distributed import Distributed


@dataclass
class Dataset:
    """uint8 images [N, H, W, C] (C = 1 grey or 3 RGB), int64 labels [N] or None, one name per class."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    notes: list[str] = field(default_factory=list)  # what the reader wants the user to know (skipped files...)

    @property
    def channels(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def take(self, count: int) -> Dataset:
        """The first `count` images (--limit)."""
        labels = None if self.labels is None else self.labels[:count]
        return Dataset(self.name, self.images[:count], labels, self.class_names, self.notes)

    def with_channels(self, channels: int) -> Dataset:
        """Grey -> RGB by repetition, RGB -> grey by ITU-R 601 luma (as Pillow's convert("L"))."""
        if channels == self.channels:
            return self
        if channels == 3:
            images = np.repeat(self.images, 3, axis=-1)
        else:
            luma = self.images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            images = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
        return Dataset(self.name, images, self.labels, self.class_names, self.notes)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, size, size, C], antialiased bilinear, done once before training."""
    if images.shape[1:3] == (size, size):
        return images
    resized = []
    for start in range(0, len(images), 4096):  # bounded float memory for large sets
        x = torch.from_numpy(np.array(images[start : start + 4096])).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        resized.append(x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(resized)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1], channels_last (a view of NHWC memory)."""
    return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)


class InMemoryBatches:
    """The whole training set as one uint8 tensor on the training device, batched by index.

    Kept as uint8 (a quarter of float32's memory) and converted per batch. Each epoch draws a
    permutation from its own seeded generator (seed, epoch), so a resumed run sees exactly the
    batches the uninterrupted run would. The last partial batch is dropped. Under torchrun every
    rank draws the same permutation and takes its own disjoint share of it (Distributed.shard).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 dist: Distributed | None = None):
        self.images, self.labels = images, labels
        self.batch_size, self.seed = batch_size, seed
        self.dist = dist or Distributed()
        self.steps_per_epoch = len(images) // (batch_size * self.dist.world_size)

    def epoch(self, epoch: int, start_step: int = 0):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.images), generator=g).to(self.images.device)
        order = self.dist.shard(order, self.batch_size)
        for step in range(start_step, self.steps_per_epoch):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield to_float(self.images[idx]), self.labels[idx]
