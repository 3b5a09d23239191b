"""Saving and loading: atomic writes, `weights_only=True` loads, self-describing generators."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from infer.errors import UserError
from infer.files import atomic_path

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
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable PyTorch file ({first_line[:160]})") from None


def _strip_compile_prefix(state_dict: dict) -> dict:
    return {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}


def generator_file(generator: Generator, epochs: int) -> dict:
    return {
        "format": GENERATOR_FORMAT,
        "config": generator.cfg.to_dict(),
        "epochs": epochs,
        "state_dict": _strip_compile_prefix(generator.state_dict()),
    }


def discriminator_file(discriminator: Discriminator, epochs: int) -> dict:
    return {
        "format": DISCRIMINATOR_FORMAT,
        "config": discriminator.cfg.to_dict(),
        "epochs": epochs,
        "state_dict": _strip_compile_prefix(discriminator.state_dict()),
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
        raise UserError(f"{path}: generator does not match its config ({str(e).splitlines()[0][:160]})") from None
    return generator.eval(), {"epochs": int(obj.get("epochs", 0)), "config": cfg}
