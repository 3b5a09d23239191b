"""Every option of a training run in one dataclass; the CLI fills it, the run records it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from infer.errors import UserError

from .data import DATASETS, Dataset
from .model import IMAGE_SIZES, ModelConfig


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    latent_dim: int = 100
    dataset: str = "mnist"
    image_size: int | None = None  # None: the data set's own (28 MNIST-like, 32 CIFAR-10, 64 folders)
    channels: int | None = None  # None: the data's own (1 grey, 3 RGB)
    unconditional: bool = False
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
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
    ema: float = 0.0  # decay of an exponential moving average of G's weights; 0 = none
    keep: str = "best"  # generator.pth from the best-FID epoch, or the last
    tensorboard: bool = True  # event files under OUT/tensorboard
    wandb: str | None = None  # a W&B project to log to as well

    def validate(self) -> None:
        positive = {"epochs": self.epochs, "batch size": self.batch_size, "latent dim": self.latent_dim,
                    "save every": self.save_every, "sample every": self.sample_every, "log every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
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
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"precision must be auto, fp32 or bf16, got {self.precision}")

    def model_config(self, data: Dataset) -> ModelConfig:
        """The model for this data: its size and channels, its classes unless --unconditional."""
        conditional = data.num_classes > 0 and not self.unconditional
        return ModelConfig(latent_dim=self.latent_dim, image_size=data.images.shape[1], channels=data.channels,
                           num_classes=data.num_classes if conditional else 0,
                           class_names=tuple(data.class_names) if conditional else (), dataset=self.dataset)

    def to_dict(self) -> dict:
        return asdict(self)
