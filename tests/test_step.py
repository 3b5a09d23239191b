"""The training step on tiny models and tensors: each loss, R1, the auxiliary classifier, n_critic and the
gradient penalty, each checked in milliseconds instead of through a full CLI run."""

import copy

import pytest
import torch
from torch import nn

from trainer.config import TrainConfig
from trainer.losses import LOSSES, R1_EVERY, gradient_penalty, r1_penalty
from trainer.model import ModelConfig, build_models
from trainer.monitor import AUX_ACCURACY, METRIC_NAMES
from trainer.step import GanStep

BATCH = 8


def make_step(seed: int = 0, **options) -> GanStep:
    cfg = TrainConfig(batch_size=BATCH, latent_dim=8, g_width=4, d_width=4, **options)
    if cfg.aux_weight is None:  # the loss's default, as a run on labelled data resolves it
        cfg = TrainConfig(**{**cfg.to_dict(), "aux_weight": LOSSES[cfg.loss].aux_weight})
    torch.manual_seed(seed)
    model_cfg = ModelConfig(latent_dim=8, g_width=4, d_width=4, d_norm=cfg.d_norm, d_blocks=cfg.d_blocks,
                            spectral_norm=cfg.spectral_norm)
    generator, discriminator = build_models(model_cfg, classifier=cfg.aux_weight > 0)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    return GanStep(cfg, generator, discriminator, opt_g, opt_d, torch.Generator().manual_seed(seed))


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, 1, 28, 28, generator=g) * 2 - 1, torch.arange(BATCH) % 10


def weights(model: nn.Module) -> dict:
    """The trained weights (not BatchNorm's running statistics, which every forward in train mode moves)."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def changed(before: dict, model: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.named_parameters())


def expected_d_loss(step: GanStep, real, labels, noise_state, global_step: int) -> torch.Tensor:
    """D's loss replayed by hand on copies of the models as they were before the step: the loss's own D term,
    plus the auxiliary classifier, the gradient penalty and R1 where they apply."""
    g, d, cfg, loss = copy.deepcopy(step.generator), copy.deepcopy(step.discriminator), step.cfg, step.loss
    noise = torch.Generator().set_state(noise_state)
    z = torch.randn(len(real), cfg.latent_dim, generator=noise)
    real = real.detach().requires_grad_(True)
    fake = g(z, labels)
    scores_real = d(real, labels)
    expected = loss.d(scores_real, d(fake.detach(), labels), step.targets)
    if cfg.aux_weight:
        expected = expected + nn.functional.cross_entropy(d(real, classify=True), labels)
    if loss.gradient_penalty:
        expected = expected + cfg.gp_weight * gradient_penalty(d, real, fake.detach(), labels, noise)
    if cfg.r1 and global_step % R1_EVERY == 0:
        expected = expected + cfg.r1 / 2 * R1_EVERY * r1_penalty(scores_real, real)
    return expected.detach()


@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_loss_moves_d_then_g_with_the_documented_d_loss(loss):
    step = make_step(loss=loss, n_critic=1)
    real, labels = batch()
    g_before, d_before, noise = weights(step.generator), weights(step.discriminator), step.noise.get_state()
    expected = expected_d_loss(step, real, labels, noise, 0)
    result = step(real, labels, 0)
    assert result.g_stepped and changed(g_before, step.generator) and changed(d_before, step.discriminator)
    torch.testing.assert_close(result.metrics[0].detach(), expected, rtol=1e-4, atol=1e-5)
    assert all(torch.isfinite(m).all() for m in result.metrics)
    # D is trainable again after G's step, which ran it frozen
    assert all(p.requires_grad for p in step.discriminator.parameters())


def test_the_default_recipe_adds_r1_on_every_fourth_step_and_the_aux_classifier():
    step = make_step()  # bce, R1 0.1, aux 0.2: the shipped defaults
    assert step.cfg.r1 == 0.1 and step.cfg.aux_weight == 0.2
    assert step.metric_names == (*METRIC_NAMES, AUX_ACCURACY)
    real, labels = batch()
    for global_step in range(R1_EVERY + 1):  # R1 on the first and the R1_EVERY-th step, not in between
        expected = expected_d_loss(step, real, labels, step.noise.get_state(), global_step)
        result = step(real, labels, global_step)
        torch.testing.assert_close(result.metrics[0].detach(), expected, rtol=1e-4, atol=1e-5)
        assert len(result.metrics) == 5 and 0 <= float(result.metrics[4]) <= 1


def test_r1_is_the_squared_gradient_norm_at_the_real_images():
    real = torch.tensor([[1.0, 2.0], [0.5, -1.0]], requires_grad=True)
    scores = (3 * real).sum(1) + (real**2).sum(1)  # gradient 3 + 2x per pixel
    expected = ((3 + 2 * real.detach()) ** 2).sum(1).mean()
    torch.testing.assert_close(r1_penalty(scores, real), expected)


def test_the_aux_classifier_adds_its_weighted_error_to_g_and_reports_its_accuracy():
    step = make_step(aux_weight=1.0, r1=0.0)
    real, labels = batch()
    fake = step.generator(torch.randn(BATCH, 8), labels)
    with torch.no_grad():
        read_as = step.discriminator(fake, classify=True)
        expected = step.loss.g(step.discriminator(fake, labels), step.targets) + \
            nn.functional.cross_entropy(read_as, labels)
    loss = step.update_g(fake, labels)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
    assert float(step.aux_accuracy) == float((read_as.argmax(1) == labels).float().mean())
    without = make_step(aux_weight=0.0)
    assert without.metric_names == METRIC_NAMES
    assert not hasattr(without.discriminator, "classifier") or without.discriminator.classifier is None


def test_n_critic_moves_g_once_every_n_steps():
    step = make_step(loss="wgan-gp", n_critic=3)
    real, labels = batch()
    moved = []
    for global_step in range(6):
        before = weights(step.generator)
        result = step(real, labels, global_step)
        moved.append(changed(before, step.generator))
        assert result.g_stepped == moved[-1]
    assert moved == [False, False, True, False, False, True]
    assert int(step.opt_g.state_dict()["state"][0]["step"]) == 2
    assert int(step.opt_d.state_dict()["state"][0]["step"]) == 6


def test_the_gradient_penalty_is_zero_for_a_critic_with_unit_gradients():
    real, fake = torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2)

    def unit_critic(x, labels):  # gradient 0.5 in each of 4 pixels: norm exactly 1
        return 0.5 * x.flatten(1).sum(1)

    penalty = gradient_penalty(unit_critic, real, fake, None, torch.Generator().manual_seed(0))
    assert float(penalty) == pytest.approx(0.0, abs=1e-10)
