"""Every option of a training run in one dataclass; the CLI fills it, the run records it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from infer.errors import UserError

from .data import DATASETS, Dataset
from .losses import LOSSES
from .model import D_NORMS, IMAGE_SIZES, ModelConfig


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    latent_dim: int = 100
    g_width: int = 64  # G's base width: its layers have multiples of it (ngf in pytorch/examples)
    d_width: int = 64  # D's first layer width, doubled per layer down (ndf in pytorch/examples)
    # 3x3 conv blocks D adds at its smallest map (7x7 for 28x28 images); 0 = the DCGAN paper's D. One block: test
    # FID at 10 epochs 2.5-3.3 points lower on the seeds tried (docs/experiments.md); D was the weaker player
    d_blocks: int = 1
    dataset: str = "mnist"
    image_size: int | None = None  # None: the data set's own (28 MNIST-like, 32 CIFAR-10, 64 folders)
    channels: int | None = None  # None: the data's own (1 grey, 3 RGB)
    unconditional: bool = False
    loss: str = "bce"  # bce, hinge or wgan-gp (trainer/losses.py)
    # None = the loss's own default (trainer/losses.py): Adam 2e-4 (0.5, 0.99) for bce, (0.5, 0.999) for hinge,
    # 1e-4 (0, 0.9) for wgan-gp
    lr_g: float | None = None
    lr_d: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    n_critic: int | None = None  # D steps per G step; None = 5 for wgan-gp, else 1
    gp_weight: float = 10.0  # the gradient penalty's weight (wgan-gp)
    d_norm: str = "auto"  # D's normalisation: batch, layer, none; auto = layer for wgan-gp, else batch
    spectral_norm: bool = False
    # gamma of the R1 penalty on real images (Mescheder et al. 2018); 0 = off; None = the loss's (0.1 for bce, else 0)
    r1: float | None = None
    # weight of G's auxiliary classification loss (AC-GAN, Odena et al. 2017): D also holds a classifier, trained
    # on real images only, and G is asked to make its images read as the digit asked for; 0 = off; None = the
    # loss's (trainer/losses.py) where the model has labels, else 0
    aux_weight: float | None = None
    # decay both learning rates linearly to 0 over the last N epochs; 0 = constant; None = the last 40% of
    # --epochs, which follows --epochs on --resume (constant, then linear decay, as CycleGAN schedules it;
    # docs/experiments.md measured 2-7 of 10 epochs)
    lr_decay_epochs: int | None = None
    real_label: float = 1.0
    fake_label: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # torch.compile G and D: opt-in, no gain measured on CPU
    seed: int = 0
    out: str = "artifacts"
    data_dir: str | None = None
    limit: int | None = None
    resume: str | None = None
    save_every: int = 5
    sample_every: int = 1
    log_every: int = 50
    eval_every: int = 1  # epochs between FID evaluations; 0 = never
    eval_samples: int = 10_000
    # decay of an exponential moving average of G's weights (evaluated and exported); 0 = none. 0.999 (about the
    # last 1,000 steps; less early on, as it ramps up): with R1's jumpier live G, ahead of 0.99 at 10 epochs
    # on both seeds tried (docs/experiments.md)
    ema: float = 0.999
    keep: str = "best"  # generator.pth from the best-FID epoch, or the last
    tensorboard: bool = True  # event files under OUT/tensorboard
    wandb: str | None = None  # a W&B project to log to as well
    # time-to-quality: the wall time at which the selection FID first falls to this. 8.4 is the FID against the
    # training images of the model bundled before #12 (test set: 9.64), the quality #12 asks for in 10 epochs
    quality_fid: float = 8.4

    def __post_init__(self):
        """Options left to the loss take its defaults (an unknown loss is left for validate() to refuse)."""
        loss = LOSSES.get(self.loss)
        if loss is None:
            return
        for name, default in {"lr_g": loss.lr, "lr_d": loss.lr, "beta1": loss.betas[0], "beta2": loss.betas[1],
                              "n_critic": loss.n_critic, "r1": loss.r1}.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.d_norm == "auto":
            self.d_norm = loss.d_norm

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
        """The epochs at the end of the run over which the learning rates fall to 0."""
        return round(0.4 * self.epochs) if self.lr_decay_epochs is None else self.lr_decay_epochs

    def model_config(self, data: Dataset) -> ModelConfig:
        """The model for this data: its size and channels, its classes unless --unconditional."""
        conditional = data.num_classes > 0 and not self.unconditional
        return ModelConfig(latent_dim=self.latent_dim, image_size=data.images.shape[1], channels=data.channels,
                           num_classes=data.num_classes if conditional else 0,
                           class_names=tuple(data.class_names) if conditional else (), dataset=self.dataset,
                           g_width=self.g_width, d_width=self.d_width, d_norm=self.d_norm,
                           spectral_norm=self.spectral_norm, d_blocks=self.d_blocks)

    def to_dict(self) -> dict:
        return asdict(self)
