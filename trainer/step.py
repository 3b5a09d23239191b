"""One training step of the GAN, as pytorch/examples dcgan writes it: (1) update D, (2) update G.

The loss (trainer/losses.py) is the only seam: D's and G's objectives come from LOSSES[--loss]; the
regularisers (gradient penalty, R1, the auxiliary classifier) are added here, each in one place.
Runs on any models and tensors, so each branch can be tested on tiny ones (tests/test_step.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig
from .device import autocast
from .losses import LOSSES, R1_EVERY, gradient_penalty, r1_penalty
from .model import Discriminator, Generator
from .monitor import AUX_ACCURACY, METRIC_NAMES


@dataclass
class DResult:
    loss: torch.Tensor
    scores_real: torch.Tensor
    scores_fake: torch.Tensor
    fake: torch.Tensor  # G's images of this step, still attached to G's graph for its update


@dataclass
class StepResult:
    metrics: tuple  # tensors, in the order of GanStep.metric_names: read from the device only at log points
    fake: torch.Tensor
    g_stepped: bool  # False on critic-only steps (--n-critic)


class GanStep:
    """D's and G's updates for one batch. `forwards` are the (maybe DDP-wrapped or compiled) callables that
    run G, D, D frozen for G's update, and D for the penalties (never compiled: they take a double backward);
    by default the models themselves."""

    def __init__(self, cfg: TrainConfig, generator: Generator, discriminator: Discriminator,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, noise: torch.Generator,
                 precision: str = "fp32", forwards: tuple | None = None):
        self.cfg, self.loss, self.precision = cfg, LOSSES[cfg.loss], precision
        self.generator, self.discriminator, self.opt_g, self.opt_d = generator, discriminator, opt_g, opt_d
        self.g, self.d, self.d_frozen, self.d_penalised = forwards or (generator, discriminator, discriminator,
                                                                       discriminator)
        self.noise = noise
        self.device = next(generator.parameters()).device
        self.conditional = generator.cfg.conditional
        b = cfg.batch_size
        self.targets = {  # what the losses compare D's outputs with (trainer/losses.py)
            "real": torch.full((b,), cfg.real_label, device=self.device),
            "fake": torch.full((b,), cfg.fake_label, device=self.device),
            "ones": torch.ones(b, device=self.device),
        }
        self.metric_names = METRIC_NAMES + ((AUX_ACCURACY,) if cfg.aux_weight else ())
        self.aux_accuracy = torch.zeros((), device=self.device)  # refreshed by each G step

    def __call__(self, real: torch.Tensor, labels: torch.Tensor, step: int) -> StepResult:
        """One D update, and a G update every --n-critic steps. `step` counts the run's steps from 0."""
        cond = labels if self.conditional else None
        z = torch.randn(len(real), self.cfg.latent_dim, device=self.device, generator=self.noise)
        # (1) Update D: real images up, generated ones (same labels) down, as the loss measures it
        d = self.update_d(real, z, cond, step)
        # (2) Update G: make D score its images as real
        g_stepped = (step + 1) % self.cfg.n_critic == 0
        if g_stepped:
            loss_g = self.update_g(d.fake, cond)
        else:  # a critic-only step: G does not move; its loss is logged as D saw the batch before its step
            loss_g = self.loss.g(d.scores_fake.detach(), self.targets)
        metrics = (d.loss, loss_g, self.loss.show(d.scores_real).mean(), self.loss.show(d.scores_fake).mean())
        if self.cfg.aux_weight:  # on critic-only steps, that of G's last step
            metrics += (self.aux_accuracy,)
        return StepResult(metrics, d.fake, g_stepped)

    def update_d(self, real: torch.Tensor, z: torch.Tensor, cond: torch.Tensor | None, step: int) -> DResult:
        cfg = self.cfg
        r1 = cfg.r1 > 0 and step % R1_EVERY == 0
        # The penalties take a double backward, which torch.compile cannot: D runs uncompiled for the whole of
        # such an update (mixing the two, BatchNorm's running statistics would trip autograd's version check).
        d = self.d_penalised if r1 or self.loss.gradient_penalty else self.d
        if r1:
            real = real.detach().requires_grad_(True)
        with autocast(self.device, self.precision):
            fake = self.g(z, cond)
            scores_real = d(real, cond).float()
            scores_fake = d(fake.detach(), cond).float()
            loss = self.loss.d(scores_real, scores_fake, self.targets)
            if cfg.aux_weight:  # AC-GAN's classifier, trained on real images only, so G cannot teach it its errors
                loss = loss + nn.functional.cross_entropy(d(real.detach(), classify=True).float(), cond)
            if self.loss.gradient_penalty:
                loss = loss + cfg.gp_weight * gradient_penalty(d, real, fake.detach(), cond, self.noise)
        if r1:  # lazily, as StyleGAN2 does: every R1_EVERY-th D step, weighted by R1_EVERY to keep its strength
            loss = loss + cfg.r1 / 2 * R1_EVERY * r1_penalty(scores_real, real)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return DResult(loss, scores_real, scores_fake, fake)

    def update_g(self, fake: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        # D's own weight gradients are not needed here, so D is frozen for this backward instead of
        # computing and discarding them.
        cfg = self.cfg
        self.discriminator.requires_grad_(False)
        with autocast(self.device, self.precision):
            loss = self.loss.g(self.d_frozen(fake, cond).float(), self.targets)
            if cfg.aux_weight:  # ...and read as the digit asked for
                read_as = self.d_frozen(fake, classify=True).float()
                loss = loss + cfg.aux_weight * nn.functional.cross_entropy(read_as, cond)
                self.aux_accuracy = (read_as.argmax(1) == cond).float().mean().detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.discriminator.requires_grad_(True)
        return loss


def set_learning_rates(cfg: TrainConfig, opt_g, opt_d, step: int, steps_per_epoch: int) -> None:
    """--lr-decay-epochs N: both rates fall linearly to 0 over the last N epochs (constant before)."""
    left = cfg.epochs * steps_per_epoch - step
    factor = min(1.0, left / (cfg.decay_epochs * steps_per_epoch))
    for optimizer, lr in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
