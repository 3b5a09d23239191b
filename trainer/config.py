"""Every option of a training run in one frozen dataclass: its default, its --help text, and whether it is locked
on --resume are declared once, here, with the option. The CLI builds its parser from these fields; the run
records them (config.json, each checkpoint). Why the defaults are what they are: docs/defaults.md."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

from infer.errors import UserError
from infer.protocol import SCORE_IMAGES

from .data import DATASETS, Dataset, load_dataset
from .losses import LOSSES, R1_EVERY
from .model import D_NORMS, IMAGE_SIZES, ModelConfig


def option(default, help: str, *, locked: bool = False, before: object = MISSING, **cli) -> field:
    """A TrainConfig field. `locked`: on --resume it must match the checkpoint (it defines the model or the
    optimisation, so another value would silently make another run). `before`: the value of runs whose
    checkpoints were written before the option existed, so they resume as they trained. `cli`: argparse
    extras (metavar, choices, action)."""
    return field(default=default, metadata={"help": help, "locked": locked, "before": before, "cli": cli})


def per_loss(attribute: str, where=lambda loss: True) -> str:
    """'bce X, hinge Y, wgan-gp Z': a default each loss brings (trainer/losses.py), for --help."""
    return ", ".join(f"{name} {getattr(loss, attribute)}" for name, loss in LOSSES.items() if where(loss))


# the share of the run over which the rates fall to 0 when --lr-decay-epochs is not given: 24 epochs decaying
# over 60% were level on the test set with 30 over 40%, in 80% of the epochs (docs/defaults.md). Checkpoints
# record it; those written before 2026-12-07 resume with the 40% they trained with (trainer/cli.py)
DECAY_SHARE = 0.6
DECAY_SHARE_BEFORE = 0.4


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(24, "epochs to train in total")
    batch_size: int = option(64, "images per step and per process; under torchrun with N processes a step trains "
                             "on N x batch-size images; nothing, learning rates included, is rescaled", locked=True)
    latent_dim: int = option(ModelConfig.latent_dim, "size of the noise vector z", locked=True)
    g_width: int = option(ModelConfig.g_width, "G's width, ngf in pytorch/examples", locked=True)
    d_width: int = option(ModelConfig.d_width, "D's width, ndf in pytorch/examples", locked=True)
    d_blocks: int = option(ModelConfig.d_blocks, "3x3 conv blocks D adds at its smallest map, 7x7 for MNIST; "
                           "0 = the DCGAN paper's D", locked=True, before=0)
    dataset: str = option("mnist", "mnist (bundled); fashion-mnist, kmnist or idx (IDX files), cifar10 (binary "
                          "version) or folder (PNG/JPEG, one subfolder per class or flat) read from --data-dir",
                          locked=True)
    image_size: int | None = option(None, "28, 32 or 64 (default: the data set's own: 28 for IDX sets, 32 for "
                                    "CIFAR-10, 64 for folders; 64 is the DCGAN paper's stack)", locked=True)
    channels: int | None = option(None, "1 grey or 3 RGB (default: the data's own)", locked=True)
    unconditional: bool = option(False, "train the classic DCGAN, whose G ignores labels", locked=True,
                                 action="store_true")
    loss: str = option("bce", "bce (the non-saturating DCGAN loss), hinge or wgan-gp (Gulrajani et al. 2017); "
                       "each brings its own defaults below", locked=True)
    lr_g: float | None = option(None, f"generator learning rate (default: the loss's, {per_loss('lr')})",
                                locked=True)
    lr_d: float | None = option(None, f"discriminator learning rate (default: the loss's, {per_loss('lr')})",
                                locked=True)
    beta1: float | None = option(None, "Adam beta1 (default: the loss's, "
                                 f"{', '.join(f'{n} {loss.betas[0]}' for n, loss in LOSSES.items())})", locked=True)
    beta2: float | None = option(None, "Adam beta2 (default: the loss's, "
                                 f"{', '.join(f'{n} {loss.betas[1]}' for n, loss in LOSSES.items())})", locked=True)
    n_critic: int | None = option(None, f"D (critic) steps per G step (default: the loss's, {per_loss('n_critic')})",
                                  locked=True)
    gp_weight: float = option(10.0, "weight of the gradient penalty, wgan-gp only", locked=True)
    d_norm: str = option("auto", "D's normalisation: batch, layer or none (default auto: the loss's, "
                         f"{per_loss('d_norm')})", locked=True)
    spectral_norm: bool = option(False, "spectral norm on every D layer, for any loss", locked=True,
                                 action="store_bool")
    r1: float | None = option(None, "R1 penalty (Mescheder et al. 2018) on D's gradient at real images, weight "
                              f"GAMMA/2, applied every {R1_EVERY}th D step; any loss; 0 = off (default: the loss's, "
                              f"{per_loss('r1')})", locked=True, before=0.0, metavar="GAMMA")
    aux_weight: float | None = option(None, "auxiliary classifier (AC-GAN, Odena et al. 2017): D also learns to "
                                      "classify real images without their labels, and G's loss adds W x its error "
                                      "on G's images; conditional runs; 0 = off (default: the loss's, "
                                      f"{per_loss('aux_weight')}; 0 for data without classes)",
                                      locked=True, before=0.0, metavar="W")
    lr_decay_epochs: int | None = option(None, "decay both learning rates linearly to 0 over the last N epochs; "
                                         "0 = constant (default: the last 60%%, rounded down: 14 of 24 epochs)",
                                         locked=True)
    real_label: float = option(1.0, "D's target for real images, e.g. 0.9 for smoothing", locked=True)
    fake_label: float = option(0.0, "D's target for generated images", locked=True)
    device: str = option("auto", "auto (CUDA when present and this torch has kernels for the GPU), cpu, cuda or "
                         "cuda:N (docs/gpu.md)")
    precision: str = option("auto", "auto = bf16 autocast where the hardware has native bf16 (GPUs of capability "
                            "8.0 on), else fp32", locked=True,
                            choices=["auto", "fp32", "bf16"])
    compile: bool = option(False, "torch.compile G and D: for CUDA runs (no gain on CPU: docs/performance.md)",
                           action="store_bool")
    seed: int = option(0, "seed for weights, batches and noise", locked=True)
    out: str = option("artifacts", "output folder")
    data_dir: str | None = option(None, "where the --dataset files are (MNIST: the bundled copy unless given)",
                                  locked=True)
    limit: int | None = option(None, "train on the first N images only (quick tries and tests)", locked=True)
    resume: str | None = option(None, "continue from OUT/checkpoints/last.pt, or from the given checkpoint",
                                nargs="?", const="last")
    save_every: int = option(5, "also keep checkpoints/epoch_NNN.pt every N epochs")
    sample_every: int = option(1, "write samples/epoch_NNN.png every N epochs")
    sample_every_steps: int = option(0, "also write samples/step_NNNNNNN.png every N steps, to watch a run "
                                     "within an epoch; 0 = off")
    log_every: int = option(50, "read metrics from the device every N steps")
    eval_every: int = option(1, "compute FID (as mnist-gen score does) every N epochs; 0 = never")
    eval_samples: int = option(SCORE_IMAGES, "images per FID evaluation")
    ema: float = option(0.999, "keep an exponential moving average of G's weights with this decay and evaluate, "
                        "sample and export it; 0 = off, the live G", locked=True)
    keep: str = option("best", "generator.pth from the best-FID epoch or the last", choices=["best", "last"])
    tensorboard: bool = option(True, "write TensorBoard event files to OUT/tensorboard", action="store_bool")
    wandb: str | None = option(None, "log to this Weights & Biases project too (pip install -e \".[wandb]\"; "
                               "WANDB_MODE=offline works without network)", metavar="PROJECT")
    quality_fid: float = option(8.4, "report the wall time at which the selection FID (vs training-set "
                                "statistics) first falls to this")

    def __post_init__(self):
        """Options left to the loss take its defaults (an unknown loss is left for validate() to refuse)."""
        loss = LOSSES.get(self.loss)
        if loss is None:
            return
        defaults = {"lr_g": loss.lr, "lr_d": loss.lr, "beta1": loss.betas[0], "beta2": loss.betas[1],
                    "n_critic": loss.n_critic, "r1": loss.r1, "d_norm": loss.d_norm}
        for name, default in defaults.items():
            if getattr(self, name) in (None, "auto"):
                object.__setattr__(self, name, default)  # still being built: frozen from here on

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise UserError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        positive = {"epochs": self.epochs, "batch size": self.batch_size, "latent dim": self.latent_dim,
                    "--g-width": self.g_width, "--d-width": self.d_width,
                    "save every": self.save_every, "sample every": self.sample_every, "log every": self.log_every,
                    "--n-critic": self.n_critic}
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
        if self.d_blocks < 0:
            raise UserError(f"--d-blocks must be >= 0, got {self.d_blocks}")
        if self.image_size is not None and self.image_size not in IMAGE_SIZES:
            raise UserError(f"image size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise UserError(f"--channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.dataset not in DATASETS:
            raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        for name, value in {"lr-g": self.lr_g, "lr-d": self.lr_d}.items():
            if not value > 0:
                raise UserError(f"--{name} must be > 0, got {value}")
        for name, value in {"beta1": self.beta1, "beta2": self.beta2}.items():
            if not 0 <= value < 1:
                raise UserError(f"--{name} must be in [0, 1), got {value}")
        for name, value in {"real-label": self.real_label, "fake-label": self.fake_label}.items():
            if not 0 <= value <= 1:
                raise UserError(f"--{name} must be in [0, 1], got {value}")
        if self.limit is not None and self.limit < self.batch_size:
            raise UserError(f"--limit {self.limit} is smaller than one batch ({self.batch_size})")
        if self.sample_every_steps < 0:
            raise UserError(f"--sample-every-steps must be >= 0 (0 = off), got {self.sample_every_steps}")
        if self.eval_every < 0:
            raise UserError(f"eval every must be >= 0, got {self.eval_every}")
        if self.eval_samples <= 128:
            raise UserError(f"--eval-samples must be > 128 (a feature covariance needs them), got {self.eval_samples}")
        if not 0 <= self.ema < 1:
            raise UserError(f"--ema must be in [0, 1), e.g. 0.999, got {self.ema}")
        if self.keep not in ("best", "last"):
            raise UserError(f"--keep must be best or last, got {self.keep}")
        if not 0 <= self.r1 < math.inf:
            raise UserError(f"--r1 must be >= 0, e.g. 0.1 (0 = off), got {self.r1}")
        if self.aux_weight is not None and not 0 <= self.aux_weight < math.inf:
            raise UserError(f"--aux-weight must be >= 0, e.g. 0.2 (0 = off), got {self.aux_weight}")
        if not self.gp_weight > 0:
            raise UserError(f"--gp-weight must be > 0, got {self.gp_weight}")
        if self.d_norm not in D_NORMS:
            raise UserError(f"--d-norm must be one of auto, {', '.join(D_NORMS)}, got {self.d_norm!r}")
        if LOSSES[self.loss].gradient_penalty and self.d_norm == "batch":
            raise UserError("--loss wgan-gp needs a critic without BatchNorm (its gradient penalty is per image): "
                            "use --d-norm layer or none")
        if self.lr_decay_epochs is not None and not 0 <= self.lr_decay_epochs <= self.epochs:
            raise UserError(f"--lr-decay-epochs must be in [0, --epochs {self.epochs}], got {self.lr_decay_epochs}")
        if not self.quality_fid > 0:
            raise UserError(f"--quality-fid must be > 0, got {self.quality_fid}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"precision must be auto, fp32 or bf16, got {self.precision}")

    @property
    def decay_epochs(self) -> int:
        """The epochs at the end of the run over which the learning rates fall to 0: unless given, a share of
        --epochs rounded down (a 1-epoch try keeps its rates), so a run extended by --resume --epochs N decays as
        an N-epoch run."""
        if self.lr_decay_epochs is not None:
            return self.lr_decay_epochs
        return int(DECAY_SHARE * self.epochs + 1e-9)  # 1e-9: 0.6 x 30 must give 18 whatever the float rounding

    def for_data(self, data: Dataset, world_size: int = 1) -> TrainConfig:
        """This config completed by the data it trains on: its image size and channels, --aux-weight's default."""
        if self.batch_size * world_size > len(data.images):
            per_rank = f" x {world_size} processes" if world_size > 1 else ""
            raise UserError(f"--batch-size {self.batch_size}{per_rank} is larger than the training set "
                            f"({len(data.images)} images)")
        conditional = data.num_classes > 0 and not self.unconditional
        if not conditional and self.aux_weight:
            why = "--unconditional" if self.unconditional else "the data has no classes (a flat folder)"
            raise UserError(f"--aux-weight needs labels, and this run has none: {why}")
        aux_weight = self.aux_weight
        if aux_weight is None:  # the loss's default, where there are labels to classify
            aux_weight = LOSSES[self.loss].aux_weight if conditional else 0.0
        return replace(self, image_size=data.images.shape[1], channels=data.channels, aux_weight=aux_weight)

    def model_config(self, data: Dataset) -> ModelConfig:
        """The model for this data: its size and channels, its classes unless --unconditional."""
        conditional = data.num_classes > 0 and not self.unconditional
        return ModelConfig(latent_dim=self.latent_dim, image_size=data.images.shape[1], channels=data.channels,
                           num_classes=data.num_classes if conditional else 0,
                           class_names=tuple(data.class_names) if conditional else (), dataset=self.dataset,
                           g_width=self.g_width, d_width=self.d_width, d_norm=self.d_norm,
                           spectral_norm=self.spectral_norm, d_blocks=self.d_blocks,
                           classifier_width=max(1, self.d_width // 2))

    def to_dict(self) -> dict:
        return asdict(self)


def load_training_data(cfg: TrainConfig) -> Dataset:
    data = load_dataset(cfg.dataset, "train", cfg.data_dir, cfg.image_size, cfg.channels)
    return data.take(cfg.limit) if cfg.limit is not None else data


def locked_options() -> list[str]:
    return [f.name for f in fields(TrainConfig) if f.metadata["locked"]]


def values_before(name: str) -> object:
    """The value a checkpoint written before option `name` existed trained with (MISSING: no such case)."""
    return TrainConfig.__dataclass_fields__[name].metadata["before"]
