"""Saving and loading: atomic writes, `weights_only=True` loads, self-describing generators; a run's
checkpoints (last.pt every epoch, best.pt, periodic epoch_NNN.pt copies), exact resume and metrics.jsonl."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from infer.errors import UserError, first_line
from infer.files import atomic_path

from .config import DECAY_SHARE
from .model import Discriminator, Generator, ModelConfig

GENERATOR_FORMAT = "mnist-gen/generator"
DISCRIMINATOR_FORMAT = "mnist-gen/discriminator"
CHECKPOINT_FORMAT = "mnist-gen/checkpoint"


def save_atomic(obj: dict, path: str | Path) -> None:
    """torch.save through a temp file + fsync + rename: a kill leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_file(path: str | Path) -> object:
    """torch.load with weights_only=True, turning every way a file can be bad into a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as e:
        raise UserError(f"{path}: not a readable PyTorch file ({first_line(e)})") from None


def _portable(state_dict: dict) -> dict:
    """CPU copies without torch.compile's prefix: a GPU-trained file opens anywhere with weights_only=True."""
    return {k.removeprefix("_orig_mod."): v.cpu() for k, v in state_dict.items()}


def generator_file(generator: Generator, epochs: int) -> dict:
    return {
        "format": GENERATOR_FORMAT,
        "config": generator.cfg.to_dict(),
        "epochs": epochs,
        "state_dict": _portable(generator.state_dict()),
    }


def discriminator_file(discriminator: Discriminator, epochs: int) -> dict:
    return {
        "format": DISCRIMINATOR_FORMAT,
        "config": discriminator.cfg.to_dict(),
        "epochs": epochs,
        "state_dict": _portable(discriminator.state_dict()),
    }


def generator_from_file(obj: object, path: str | Path) -> tuple[Generator, dict]:
    """Rebuild a Generator from a generator.pth or a full training checkpoint. Returns (G, info)."""
    if not isinstance(obj, dict):
        raise UserError(f"{path}: not an mnist-gen generator or checkpoint")
    kind = obj.get("format")
    if kind == CHECKPOINT_FORMAT:
        obj = obj.get("generator_ema") or obj["generator"]  # the averaged G when the run kept one
        kind = obj.get("format")
    if kind == DISCRIMINATOR_FORMAT:
        raise UserError(f"{path}: this is a discriminator; pass the generator (generator.pth)")
    if kind != GENERATOR_FORMAT:
        raise UserError(f"{path}: not an mnist-gen generator or checkpoint")
    try:
        cfg = ModelConfig.from_dict(obj["config"])
        generator = Generator(cfg)
        generator.load_state_dict(obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: generator does not match its config ({first_line(e)})") from None
    return generator.eval(), {"epochs": int(obj.get("epochs", 0)), "config": cfg}


@dataclass
class RunState:
    """Where the run is: everything `--resume` needs besides the weights and optimizers."""

    epoch: int = 0  # epochs fully done
    step_in_epoch: int = 0  # steps of the current epoch done (non-zero after an interrupt)
    global_step: int = 0
    history: list = field(default_factory=list)
    best_fid: float = float("inf")  # the selection FID: against the training images' statistics
    best_epoch: int = 0
    wall_s: float = 0.0  # training wall time so far, evaluations included, summed over resumes
    quality_epoch: int = 0  # time-to-quality: the first epoch whose selection FID <= --quality-fid...
    quality_wall_s: float = 0.0  # ...and the wall time at its end


def training_checkpoint(run) -> dict:
    """All of a run (trainer/train.py's Run) that --resume needs. Every rank takes part (its noise state)."""
    s = run.state
    return {
        "format": CHECKPOINT_FORMAT,
        "generator": generator_file(run.generator, s.epoch),
        "generator_ema": generator_file(run.ema.model, s.epoch) if run.ema else None,
        "discriminator": discriminator_file(run.discriminator, s.epoch),
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict(),
        "epoch": s.epoch,
        "step_in_epoch": s.step_in_epoch,
        "global_step": s.global_step,
        "world_size": run.dist.world_size,
        "rng": {
            "noise": run.noise.get_state(),
            "noise_ranks": run.dist.gather(run.noise.get_state()),  # every rank's, for --resume
            "torch": torch.get_rng_state(),  # no CUDA state: no draw uses it, and reading it starts CUDA
        },
        "config": run.cfg.to_dict(),
        "decay_share": DECAY_SHARE,  # the rule behind the default --lr-decay-epochs, for --resume
        "history": s.history,
        "best": {"fid": s.best_fid, "epoch": s.best_epoch},
        "time": {"wall_s": s.wall_s, "quality_epoch": s.quality_epoch, "quality_wall_s": s.quality_wall_s},
    }


def restore(run, ckpt: dict, path: Path) -> None:
    """Put weights, optimizers, RNG states and position back from a loaded checkpoint."""
    saved_world = ckpt.get("world_size", 1)
    if saved_world != run.dist.world_size:
        # Each rank's share of the data and its noise depend on the world size: refuse rather than drift.
        launch = "python -m trainer" if saved_world == 1 else f"torchrun with {saved_world} processes in all"
        raise UserError(f"{path} was written by {saved_world} process(es), this run has {run.dist.world_size}; "
                        f"resume with the same count ({launch})")
    try:
        run.generator.load_state_dict(ckpt["generator"]["state_dict"])
        if run.ema is not None:
            run.ema.load_state_dict(ckpt["generator_ema"]["state_dict"])
        run.discriminator.load_state_dict(ckpt["discriminator"]["state_dict"])
        run.opt_g.load_state_dict(ckpt["opt_g"])
        run.opt_d.load_state_dict(ckpt["opt_d"])
        noise = ckpt["rng"].get("noise_ranks", [ckpt["rng"]["noise"]])[run.dist.rank]
        note = restore_noise(run.noise, noise, run.cfg.seed, run.dist.rank, ckpt["global_step"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        run.state = RunState(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"], list(ckpt["history"]),
                             float(ckpt["best"]["fid"]), int(ckpt["best"]["epoch"]),
                             **ckpt.get("time", {}))  # checkpoints from before time-to-quality lack it
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise UserError(f"{path}: checkpoint does not fit this model ({first_line(e)})") from None
    if note and run.dist.is_main:
        print(f"note: {note}", file=sys.stderr)


def restore_noise(noise: torch.Generator, saved: torch.Tensor, seed: int, rank: int, step: int) -> str:
    """Set the noise generator to its saved state; one saved on the other kind of device reseeds it (a note).

    A generator's state belongs to its device (CUDA's Philox: 16 bytes; the CPU's Mersenne Twister: 5,056),
    so a checkpoint from a GPU cannot set a CPU generator, nor the reverse. The noise then continues from a
    seed drawn from (--seed, rank, step), the same on every machine: reproducible, though from that step on
    not the run the first device would have made.
    """
    if saved.numel() == noise.get_state().numel():
        noise.set_state(saved)
        return ""
    noise.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))
    return (f"the checkpoint's noise state is from another kind of device than {noise.device.type}, so the noise "
            f"continues reseeded from (--seed {seed}, rank {rank}, step {step}): reproducible, but not the run the "
            "first device would have made")


class RunFiles:
    """OUT/checkpoints and OUT/metrics.jsonl of a run; rank 0 alone writes (`writes`)."""

    def __init__(self, out: Path, writes: bool):
        self.out, self.writes = Path(out), writes
        self.last = self.out / "checkpoints" / "last.pt"

    def save_last(self, checkpoint: dict) -> Path:
        if self.writes:
            save_atomic(checkpoint, self.last)
        return self.last

    def copy_last(self, name: str) -> None:
        """best.pt, epoch_NNN.pt: copies of last.pt, each written atomically."""
        with atomic_path(self.out / "checkpoints" / name) as tmp:
            shutil.copyfile(self.last, tmp)

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl (one line, flushed at once): a kill can at worst cut its last line."""
        if self.writes:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def rewrite_log(self, history: list[dict]) -> None:
        """On --resume: the log holds exactly the history of the resumed run."""
        if self.writes:
            with atomic_path(self.out / "metrics.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(h) + "\n" for h in history))

    def last_good(self, epochs_done: int) -> str:
        if not epochs_done:
            return "no checkpoint was saved yet"
        return f"last good checkpoint: {self.last} (epoch {epochs_done})"
