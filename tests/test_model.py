"""The one DCGAN definition: shapes, ranges, conditioning, and pytorch/examples compatibility."""

import pytest
import torch

from trainer.model import Discriminator, Generator, ModelConfig, build_models


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("num_classes", [10, 0])
def test_shapes_and_range(size, num_classes):
    cfg = ModelConfig(image_size=size, num_classes=num_classes, g_width=8, d_width=8)
    generator, discriminator = build_models(cfg)
    z, labels = torch.randn(5, cfg.latent_dim), torch.arange(5)
    images = generator(z, labels if num_classes else None)
    assert images.shape == (5, 1, size, size)
    assert images.min() >= -1 and images.max() <= 1
    logits = discriminator(images, labels if num_classes else None)
    assert logits.shape == (5,)


@pytest.mark.parametrize("size, smallest", [(28, 7), (32, 4), (64, 4)])
def test_d_blocks_are_3x3_convs_at_the_smallest_map(size, smallest):
    seen = []
    discriminator = Discriminator(ModelConfig(image_size=size, d_width=8, d_blocks=2), classifier=True)
    for conv in (m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)):
        conv.register_forward_hook(lambda module, inputs, output: seen.append(tuple(output.shape[-2:])))
    discriminator(torch.randn(3, 1, size, size), torch.arange(3))
    assert seen == [(smallest, smallest)] * 2  # two blocks in D's main stack
    discriminator(torch.randn(3, 1, size, size), classify=True)
    assert len(seen) == 2  # and none in its classifier


def test_the_classifier_is_narrower_than_d_and_old_files_keep_their_width():
    first_width = lambda d: d.classifier[0].out_channels  # noqa: E731
    assert first_width(Discriminator(ModelConfig(), classifier=True)) == ModelConfig.classifier_width < 64
    # a checkpoint from before the field: its classifier was D's width, and it must load as such
    old = ModelConfig(d_width=16).to_dict()
    del old["classifier_width"]
    wide = Discriminator(ModelConfig.from_dict(old), classifier=True)
    assert first_width(wide) == 16
    wide.load_state_dict(Discriminator(ModelConfig(d_width=16, classifier_width=16), classifier=True).state_dict())


def test_conditional_generator_uses_the_label():
    generator, _ = build_models(ModelConfig(g_width=8))
    generator.eval()
    z = torch.randn(1, 100)
    assert not torch.allclose(generator(z, torch.tensor([3])), generator(z, torch.tensor([4])))


def test_dcgan_init():
    generator, discriminator = build_models(ModelConfig())
    conv = generator.main[0].weight
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(conv.mean().item()) < 0.002
    bn = discriminator.main[3].weight
    assert abs(bn.mean().item() - 1.0) < 0.01


def test_unconditional_64_matches_pytorch_examples_keys():
    """pytorch/examples dcgan netG (nz=100, ngf=64, nc=1) state_dicts load into our 64x64 G."""
    ngf, nz = 64, 100
    ours = Generator(ModelConfig(image_size=64, num_classes=0, g_width=ngf))
    expected_shapes = {
        "main.0.weight": (nz, ngf * 8, 4, 4), "main.3.weight": (ngf * 8, ngf * 4, 4, 4),
        "main.6.weight": (ngf * 4, ngf * 2, 4, 4), "main.9.weight": (ngf * 2, ngf, 4, 4),
        "main.12.weight": (ngf, 1, 4, 4),
    }
    state = ours.state_dict()
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape
    assert not any(k.startswith("label") for k in state)


def test_discriminator_outputs_logits_not_probabilities():
    discriminator = Discriminator(ModelConfig(num_classes=0, d_width=8))
    with torch.no_grad():
        discriminator.main[-1].weight.fill_(1.0)
        logits = discriminator(torch.ones(2, 1, 28, 28))
    assert (logits.abs() > 1).all()  # a sigmoid output could never leave [0, 1]


@pytest.mark.parametrize("size", [28, 64])
def test_model_summary_lists_every_layer_and_parameter(size):
    """G's first layer (most of G's parameters) runs as a matmul, and is still a layer hooks and summaries see."""
    from trainer.artifacts import model_summary

    generator, _ = build_models(ModelConfig(image_size=size))
    summary = model_summary(generator, torch.zeros(2, 100), torch.zeros(2, dtype=torch.long))
    rows = [line for line in summary.splitlines()[2:-1]]
    listed = sum(int(row.split()[-1].replace(",", "")) for row in rows)
    assert listed == sum(p.numel() for p in generator.parameters())
    first_width = ModelConfig.g_width * (4 if size == 28 else 8)
    assert any(row.startswith("main.0 (LatentProjection)") and f"[2, {first_width}," in row for row in rows)


def test_named_parts_are_the_layers_they_name():
    generator, _ = build_models(ModelConfig(g_width=8))
    parts = generator.parts
    assert parts.first is generator.main[0] and parts.output.out_channels == 1
    assert parts.last_up.stride == (2, 2) and parts.last_norm.num_features == parts.last_up.out_channels
    x = parts.middle(parts.first(generator.latent(torch.randn(3, 100), torch.arange(3))))
    assert x.shape == (3, 32, 7, 7)  # the last up-block's input


def test_bad_image_size():
    with pytest.raises(ValueError):
        ModelConfig(image_size=48)
