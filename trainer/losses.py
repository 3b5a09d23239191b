"""The GAN losses, one small function pair each, picked by name: the training step calls through LOSSES[name].

D's raw output is a logit for `bce` and a score everywhere else; each loss says how to read it
(what the progress line shows as D(x) and D(G(z))) and when D has won. `targets` holds the
label tensors of the run: "real" and "fake" (D's targets, --real-label / --fake-label) and "ones".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

bce = nn.functional.binary_cross_entropy_with_logits


def bce_d(real: torch.Tensor, fake: torch.Tensor, targets: dict) -> torch.Tensor:
    return bce(real, targets["real"]) + bce(fake, targets["fake"])


def bce_g(fake: torch.Tensor, targets: dict) -> torch.Tensor:
    return bce(fake, targets["ones"])  # the non-saturating loss: make D call G's images real


def hinge_d(real: torch.Tensor, fake: torch.Tensor, targets: dict) -> torch.Tensor:
    return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()


def wasserstein_g(fake: torch.Tensor, targets: dict) -> torch.Tensor:
    return -fake.mean()  # G of hinge (Lim & Ye 2017; Miyato et al. 2018) and of WGAN: raise D's score


def wasserstein_d(real: torch.Tensor, fake: torch.Tensor, targets: dict) -> torch.Tensor:
    return fake.mean() - real.mean()  # minus the critic's estimate of the Wasserstein distance


def gradient_penalty(critic: Callable, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
                     noise: torch.Generator) -> torch.Tensor:
    """Gulrajani et al. 2017: E[(|grad_x C(x_hat)|_2 - 1)^2] on x_hat = e x + (1 - e) G(z), e ~ U[0, 1].

    Conditional critics see x_hat with the batch's labels (real and generated images share them).
    The gradient is taken with respect to the image only.
    """
    e = torch.rand(len(real), 1, 1, 1, device=real.device, generator=noise)
    mixed = (e * real + (1 - e) * fake).requires_grad_(True)
    scores = critic(mixed, labels).float()
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.float().flatten(1).norm(dim=1) - 1) ** 2).mean()


R1_EVERY = 16  # R1 is applied lazily (Karras et al. 2020, StyleGAN2, whose interval this is): every 16th D step,
# weighted 16x. Every 4th cost a fifth of the narrow default models' step for the same digits (docs/defaults.md)


def r1_penalty(scores_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: E|grad_x D(x)|^2 on real images (x needs requires_grad; the caller weighs it by gamma/2).

    Zero-centred on the data: D is pushed to be flat where the real images are, so that it cannot
    keep sharpening around them; with any loss.
    """
    (grad,) = torch.autograd.grad(scores_real.sum(), real, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1).mean()


@dataclass(frozen=True)
class Loss:
    d: Callable  # (D(x), D(G(z)), targets) -> D's loss
    g: Callable  # (D(G(z)), targets) -> G's loss
    shown: str  # what D(x) and D(G(z)) on the progress line are: "probability" (sigmoid of the logit) or "score"
    winning: Callable  # (mean D(x), mean D(G(z)) as shown) -> True when D has won and G gets little gradient
    winning_text: str
    d_loss_floor: float | None = 0.01  # D's loss below this is red (D stuck); None where the loss has no floor
    gradient_penalty: bool = False
    lr: float = 2e-4  # Adam defaults of the loss, used unless the user gives others
    betas: tuple = (0.5, 0.999)
    n_critic: int = 1  # D steps per G step
    d_norm: str = "batch"  # D's normalisation unless --d-norm says otherwise
    r1: float = 0.0  # gamma of the R1 penalty unless --r1 says otherwise
    aux_weight: float = 0.0  # weight of G's auxiliary classification loss unless --aux-weight says otherwise

    def show(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(scores) if self.shown == "probability" else scores


LOSSES = {
    # D(x) ~ 1 and D(G(z)) ~ 0 for several log points: D's sigmoid saturates and G learns little.
    # Adam beta2 0.99 instead of DCGAN's 0.999: a shorter memory of gradient scales, which move fast in a GAN.
    # R1 keeps D flat where the data is; the auxiliary classifier asks G for digits that read as the one asked for.
    # Each was chosen by measurement against the alternatives: docs/defaults.md
    "bce": Loss(bce_d, bce_g, "probability", lambda x, gz: x > 0.95 and gz < 0.05, "D is winning (D(x)~1, D(G(z))~0)",
                betas=(0.5, 0.99), r1=0.1, aux_weight=0.2),
    # both sides past the margin: D's hinge is flat there, nothing left for D to learn from either
    # bce's regularisers and Adam betas serve it as well: test FID 7.13 at 10 epochs (seed 0, 5 draws; bce 6.59)
    "hinge": Loss(hinge_d, wasserstein_g, "score", lambda x, gz: x > 1 and gz < -1,
                  "D is winning (D(x) > 1 and D(G(z)) < -1: past both margins)",
                  betas=(0.5, 0.99), r1=0.1, aux_weight=0.2),
    # Gulrajani et al. 2017: no BatchNorm in the critic, Adam (0, 0.9). The paper's 5 critic steps per G step at
    # 1e-4 move G 187 times an epoch here (test FID 68.54 at 10 epochs); 2 at 2e-4, with the classifier, 14.37.
    # D(x) - D(G(z)) is the critic's Wasserstein estimate: it should fall as G improves; a large,
    # lasting gap means the critic runs away from G.
    "wgan-gp": Loss(wasserstein_d, wasserstein_g, "score", lambda x, gz: x - gz > 10,
                    "critic is winning (Wasserstein estimate D(x) - D(G(z)) > 10)", d_loss_floor=None,
                    gradient_penalty=True, betas=(0.0, 0.9), n_critic=2, d_norm="layer", aux_weight=0.2),
}
