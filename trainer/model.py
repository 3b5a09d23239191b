"""The DCGAN (Radford et al. 2015): one definition, imported by the trainer and the exporter.

Three sizes:
- 28x28 native (7 -> 14 -> 28), the default for MNIST-like data: no resizing, a quarter of 64x64's compute.
- 32x32 (4 -> 8 -> 16 -> 32), CIFAR-10's size.
- 64x64, the paper's 4 -> 8 -> 16 -> 32 -> 64 stack exactly as pytorch/examples `dcgan` writes it,
  so an unconditional 64x64 generator has the same state_dict keys as that example's `netG`.
Images have `channels` channels (1 grey, 3 RGB), taken from the data.

Conditioning (num_classes > 0): G concatenates a label embedding to z; D sees the label as
one-hot maps stacked onto the image (Mirza & Osindero 2014): with a projection discriminator
(Miyato & Koyama 2018) G soon ignored z and drew one image per digit (docs/research/experiments.md).
D returns one raw output per image: a logit for the BCE loss, a score for the others (trainer/losses.py).
D can be deeper than the paper's: `d_blocks` 3x3 convs at its smallest map (the trainer's default is one:
D, not G, was the weaker player; docs/research/experiments.md, "A deeper D").
D's normalisation is BatchNorm (DCGAN), LayerNorm (the WGAN-GP critic: a gradient penalty per image
is wrong when BatchNorm couples the images of a batch) or none; spectral norm is an option on top.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

IMAGE_SIZES = (28, 32, 64)
D_NORMS = ("batch", "layer", "none")


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 100
    image_size: int = 28
    num_classes: int = 10  # 0 = unconditional
    # ngf and ndf in pytorch/examples (64 there). 32 each: twice the images/s of the 64-wide pair and better test
    # FID per minute of training on a 2-core CPU (docs/defaults.md)
    g_width: int = 32
    d_width: int = 32
    embed_dim: int = 50  # size of G's label embedding
    channels: int = 1  # 1 grey, 3 RGB
    class_names: tuple[str, ...] = ()  # one per class; () = "0".."N-1"
    dataset: str = "mnist"  # what it was trained on (decides which scorer can judge it)
    d_norm: str = "batch"  # D's normalisation: batch, layer or none (G is not affected)
    spectral_norm: bool = False  # spectral norm on every D layer (Miyato et al. 2018)
    # 3x3 conv blocks D adds at its smallest map, before its last conv (not its classifier); 0 = the paper's D
    # (docs/defaults.md). Files written before the option hold the paper's D: from_dict reads them with 0.
    d_blocks: int = 2
    # --aux-weight's classifier: D's down-stack at this width, half of D's for new runs: it only has to read
    # digits, and at D's full width it cost a fifth of a step (docs/defaults.md). Files from before the field
    # hold a classifier as wide as D.
    classifier_width: int = d_width // 2  # the one rule, as TrainConfig.model_config applies it to --d-width

    def __post_init__(self):
        if self.image_size not in IMAGE_SIZES:
            raise ValueError(f"image size must be one of {IMAGE_SIZES}, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.d_norm not in D_NORMS:
            raise ValueError(f"D norm must be one of {D_NORMS}, got {self.d_norm}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def labels(self) -> tuple[str, ...]:
        """The name of each class: the data's class names, or "0".."N-1"."""
        return self.class_names or tuple(str(c) for c in range(self.num_classes))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        fields = cls.__dataclass_fields__

        def value(key, v):
            return tuple(map(str, v)) if key == "class_names" else type(fields[key].default)(v)

        values = {k: value(k, v) for k, v in d.items() if k in fields}
        values.setdefault("d_blocks", 0)  # a file from before the option: the paper's D
        values.setdefault("classifier_width", values.get("d_width", 64))  # ...and D's width for its classifier
        return cls(**values)


class LatentProjection(nn.ConvTranspose2d):
    """G's first layer: a transposed conv on a 1x1 input, computed as the one matmul it is.

    The conv kernel is many times slower than the matmul on CPU (docs/performance.md). It stays
    a ConvTranspose2d (same weight layout, `main.0.weight` key, init and pytorch/examples compatibility);
    only the arithmetic differs. Input [N, C_in] (or pytorch/examples' [N, C_in, 1, 1]) -> [N, C_out, k, k].
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        h = (z.flatten(1) @ self.weight.flatten(1)).view(-1, self.out_channels, k, k)
        return h.contiguous(memory_format=torch.channels_last)


class GeneratorParts(NamedTuple):
    """G by role, for code that rewrites it (the exporter's sub-pixel form) instead of indexing `main`."""

    first: LatentProjection  # z (+ label embedding) -> [N, C, k, k]
    middle: nn.Sequential  # the first layer's BatchNorm and ReLU, and the up-blocks before the last
    last_up: nn.ConvTranspose2d  # the last up-block's transposed conv (k4 s2 p1)...
    last_norm: nn.BatchNorm2d  # ...its BatchNorm (a ReLU follows)
    output: nn.ConvTranspose2d  # the output layer (k4 s2 p1, a Tanh follows)


def _up(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


def _norm_and_activation(c: int, norm: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    if norm == "batch":
        layers.append(nn.BatchNorm2d(c))
    elif norm == "layer":  # over (C, H, W) of each image, with a scale and shift per channel
        layers.append(nn.GroupNorm(1, c))
    return [*layers, nn.LeakyReLU(0.2, inplace=True)]


def _down(c_in: int, c_out: int, norm: str = "none") -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), *_norm_and_activation(c_out, norm)]


def _block(c: int, norm: str) -> list[nn.Module]:
    """A 3x3 stride-1 conv that keeps the map's size (--d-blocks)."""
    return [nn.Conv2d(c, c, 3, 1, 1, bias=False), *_norm_and_activation(c, norm)]


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.g_width
        c_in = cfg.latent_dim + (cfg.embed_dim if cfg.conditional else 0)
        if cfg.conditional:
            self.label_embedding = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        first_width, first_kernel = {28: (w * 4, 7), 32: (w * 4, 4), 64: (w * 8, 4)}[cfg.image_size]
        first = [LatentProjection(c_in, first_width, first_kernel, bias=False),
                 nn.BatchNorm2d(first_width), nn.ReLU(True)]
        c = cfg.channels
        if cfg.image_size == 28:  # 7 -> 14 -> 28
            layers = [*first, *_up(w * 4, w * 2, 4, 2, 1), nn.ConvTranspose2d(w * 2, c, 4, 2, 1)]
        elif cfg.image_size == 32:  # 4 -> 8 -> 16 -> 32
            layers = [*first, *_up(w * 4, w * 2, 4, 2, 1), *_up(w * 2, w, 4, 2, 1),
                      nn.ConvTranspose2d(w, c, 4, 2, 1, bias=False)]
        else:  # 4 -> 8 -> 16 -> 32 -> 64
            layers = [
                *first,
                *_up(w * 8, w * 4, 4, 2, 1),
                *_up(w * 4, w * 2, 4, 2, 1),
                *_up(w * 2, w, 4, 2, 1),
                nn.ConvTranspose2d(w, c, 4, 2, 1, bias=False),
            ]
        self.main = nn.Sequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z: [N, latent_dim], labels: [N] int64 (ignored when unconditional) -> [N, C, H, W] in [-1, 1]."""
        return self.main(self.latent(z, labels))

    def latent(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What the first layer reads: z, joined by the label embedding when conditional."""
        return torch.cat([z, self.label_embedding(labels)], dim=1) if self.cfg.conditional else z

    @property
    def parts(self) -> GeneratorParts:
        m = self.main  # [first, BN, ReLU, (ConvT, BN, ReLU)..., ConvT out, Tanh]
        return GeneratorParts(first=m[0], middle=m[1:-5], last_up=m[-5], last_norm=m[-4], output=m[-2])


def _down_stack(cfg: ModelConfig, c_in: int, outputs: int, norm: str, blocks: int = 0) -> list[nn.Module]:
    """Strided convs down to a 7x7 or 4x4 map (28 -> 14 -> 7, 32 -> ... -> 4, 64 -> ... -> 4), `blocks` 3x3
    convs at that size, then one conv over all of it to `outputs` values per image."""
    widths = [cfg.d_width * 2**i for i in range({28: 2, 32: 3, 64: 4}[cfg.image_size])]
    layers = _down(c_in, widths[0])  # no normalisation on the first layer (DCGAN)
    for narrow, wide in itertools.pairwise(widths):
        layers += _down(narrow, wide, norm)
    for _ in range(blocks):
        layers += _block(widths[-1], norm)
    size = 7 if cfg.image_size == 28 else 4
    return [*layers, nn.Conv2d(widths[-1], outputs, size, 1, 0, bias=False)]


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, classifier: bool = False):
        super().__init__()
        self.cfg = cfg
        # the image, then one map per class
        self.main = nn.Sequential(*_down_stack(cfg, cfg.channels + cfg.num_classes, 1, cfg.d_norm, cfg.d_blocks))
        if classifier:
            # --aux-weight: a classifier of the same shape at classifier_width that never sees the label (else it
            # would just read it), trained on real images only. LayerNorm: it judges fake batches too, one at a time.
            narrow = replace(cfg, d_width=cfg.classifier_width)
            self.classifier = nn.Sequential(*_down_stack(narrow, cfg.channels, cfg.num_classes, "layer"))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, classify: bool = False) -> torch.Tensor:
        """images: [N, C, H, W] in [-1, 1] -> one raw output per image [N] (a logit for the BCE loss),
        or with classify=True the classifier's logits [N, num_classes] (the labels are not read)."""
        if classify:
            return self.classifier(images).flatten(1)
        if self.cfg.conditional:
            n, _, h, w = images.shape
            maps = nn.functional.one_hot(labels, self.cfg.num_classes).to(images.dtype)
            images = torch.cat([images, maps[:, :, None, None].expand(n, -1, h, w)], dim=1)
        return self.main(images).flatten()


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block (BatchNorm running statistics), the caller's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def add_spectral_norm(discriminator: Discriminator) -> None:
    """Divide every conv weight of D by its largest singular value (one power iteration per step)."""
    for module in discriminator.modules():
        if isinstance(module, nn.Conv2d):
            nn.utils.parametrizations.spectral_norm(module)


def build_models(cfg: ModelConfig, classifier: bool = False) -> tuple[Generator, Discriminator]:
    generator, discriminator = Generator(cfg), Discriminator(cfg, classifier)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    if cfg.spectral_norm:  # after the init, so the first power iteration starts from the initial weights
        add_spectral_norm(discriminator)
    return generator, discriminator
