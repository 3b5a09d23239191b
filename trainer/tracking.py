"""Where a run's figures go besides metrics.jsonl: TensorBoard event files, and W&B with --wandb.

One small interface for the loop: log(record) at each log point and evaluation, image(name, grid,
step) per sample epoch, close(). `Tracking()` tracks nothing: what ranks other than 0 hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from infer.errors import UserError, first_line

WANDB_INIT_TIMEOUT_S = 30  # then W&B goes offline (files under OUT/wandb, `wandb sync` later), training goes on


class Tracking:
    def __init__(self, out: Path | None = None, cfg=None, start_step: int = 0):
        self.tensorboard = self.wandb = None
        if cfg is None:
            return
        options = {k: "none" if v is None else v for k, v in cfg.to_dict().items()}
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            # purge_step: a resumed run replaces whatever the stopped run logged after its checkpoint.
            self.tensorboard = SummaryWriter(out / "tensorboard", purge_step=start_step or None)
            # The options as hyperparameters of this run itself (add_hparams would make a sub-run).
            for summary in hparams(options, {"eval/fid": 0.0}):
                self.tensorboard.file_writer.add_summary(summary)
        if cfg.wandb:
            self.wandb = _start_wandb(cfg.wandb, out, options)

    @staticmethod
    def check_wandb() -> None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError('--wandb needs the wandb package: pip install -e ".[wandb]"') from None

    def log(self, record: dict) -> None:
        """A metrics.jsonl record: "train/..." at log points, "eval/..." for evaluations (FID, IS, ...)."""
        group = "train" if "loss_d" in record else "eval"
        scalars = {f"{group}/{key}": float(value) for key, value in record.items()
                   if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value, bool)}
        step = record["step"]
        if self.tensorboard is not None:
            for tag, value in scalars.items():
                self.tensorboard.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log({**scalars, "epoch": record["epoch"]}, step=step)

    def image(self, name: str, grid: np.ndarray, step: int) -> None:
        """A uint8 image, grey [H, W] or RGB [H, W, 3]."""
        if self.tensorboard is not None:
            self.tensorboard.add_image(name, grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")
        if self.wandb is not None:
            import wandb

            self.wandb.log({name: wandb.Image(grid)}, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.tensorboard = self.wandb = None


def _start_wandb(project: str, out: Path, options: dict):
    """A W&B run; offline when the service cannot be reached (or WANDB_MODE=offline), never a stop."""
    import wandb

    def start(mode: str | None):
        settings = wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S, silent=True)
        return wandb.init(project=project, dir=out, config=options, mode=mode, settings=settings)

    try:
        return start(None)  # WANDB_MODE decides: online by default
    except Exception as e:  # no API key, no network, service down: keep the figures locally
        reason = first_line(e)
        print(f"note: W&B is not reachable ({reason}); logging offline to {out / 'wandb'} "
              "(upload later with wandb sync)", file=sys.stderr)
        return start("offline")
