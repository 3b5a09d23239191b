"""`python -m trainer`: parse options into a TrainConfig, run, turn errors into one line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from infer.errors import UserError

from .config import DECAY_SHARE_BEFORE, TrainConfig, load_training_data, locked_options, values_before

EXAMPLES = """examples:
  python -m trainer                     # the defaults: 24 epochs
  python -m trainer --limit 2048 --epochs 1 --out runs/try
  python -m trainer --resume            # continue artifacts/checkpoints/last.pt
  python -m trainer --dataset fashion-mnist --data-dir data/fashion
  python -m trainer --dataset folder --data-dir photos/ --image-size 64   # one subfolder per class
  torchrun --nproc_per_node 4 -m trainer   # 4 processes (GPUs), DistributedDataParallel"""

TYPES = {"int": int, "float": float, "str": str}


def build_parser() -> argparse.ArgumentParser:
    """One option per TrainConfig field: its flag, type, help and default come from the field."""
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train a (conditional) DCGAN on MNIST (or your data) and write generator.pth, checkpoints, "
                    "samples and plots.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # so we know which options the user gave
    )
    for f in fields(TrainConfig):
        cli = dict(f.metadata["cli"])
        help_text = f.metadata["help"]
        if f.default is not None and "(default" not in help_text:
            shown = {True: "on", False: "off"}.get(f.default, f.default) if isinstance(f.default, bool) else f.default
            help_text += f" (default {shown})"
        if cli.get("action") == "store_bool":
            cli["action"] = argparse.BooleanOptionalAction
        elif "action" not in cli:
            cli["type"] = TYPES[f.type.split(" | ")[0]]
        p.add_argument("--" + f.name.replace("_", "-"), help=help_text, **cli)
    return p


def resolve_config(given: dict) -> tuple[TrainConfig, dict | None]:
    """Defaults <- (checkpoint's config on --resume) <- options given on the command line."""
    if "resume" not in given:
        return TrainConfig(**given), None
    from .checkpoint import CHECKPOINT_FORMAT, load_file

    out = given.get("out", TrainConfig.out)
    path = Path(out) / "checkpoints" / "last.pt" if given["resume"] == "last" else Path(given["resume"])
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not an mnist-gen training checkpoint (use checkpoints/last.pt)")
    names = {f.name for f in fields(TrainConfig)}
    removed_option(ckpt.get("config", {}), path)
    values = {k: v for k, v in ckpt.get("config", {}).items() if k in names}
    for name in names - values.keys():  # options newer than the checkpoint: resume as it trained
        if values_before(name) is not MISSING:
            values[name] = values_before(name)
    locked = locked_options()
    for key, value in given.items():
        if key in locked and key in values and value != values[key]:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {value} does not match the checkpoint ({values[key]}); "
                            "drop it to resume, or start a new run in another --out")
    values.update(given)
    if values.get("lr_decay_epochs", 0) is None and "decay_share" not in ckpt:  # written before 2026-12-07:
        values["lr_decay_epochs"] = round(DECAY_SHARE_BEFORE * values["epochs"])  # the rule it trained with
    values["resume"] = str(path)
    return TrainConfig(**values), ckpt


def removed_option(saved: dict, path: Path) -> None:
    """Refuse a checkpoint that trained with an option since removed (its run cannot go on the same way);
    one that recorded it off (--mismatch 0, as every default run did) resumes."""
    if saved.get("mismatch", 0):
        raise UserError(f"{path} trained with --mismatch, an option since removed; start a new run in another --out")
    if saved.get("loss") == "lsgan":
        raise UserError(f"{path} trained with --loss lsgan, a loss since removed; start a new run in another --out")


def main(argv: list[str] | None = None) -> int:
    from .distributed import Distributed, SharedError, is_peer_failure, same_everywhere

    dist = Distributed.from_environment()  # a world of one unless torchrun started this process
    parser = build_parser()
    if not dist.is_main:  # every rank parses the same command line: rank 0 alone reports a bad one
        parser.error = lambda message: sys.exit(2)
    given = vars(parser.parse_args(argv))
    from .train import EXIT_INTERRUPTED, EXIT_NONFINITE, Interrupted, NonFiniteLoss, train

    def say(line: str) -> None:  # what every rank meets alike is said once, by rank 0
        if dist.is_main:
            print(line, file=sys.stderr)

    dist.start(given.get("device", "auto"))
    try:
        with dist.all_or_none():
            cfg, ckpt = resolve_config(given)
            cfg.validate()
            data = load_training_data(cfg)
            cfg = cfg.for_data(data, dist.world_size)
        same_everywhere(dist, cfg.to_dict(), local=("out", "data_dir", "resume"))
        trainer = train(cfg, data, ckpt, dist=dist)
    except Interrupted as e:
        say(f"interrupted: {e}")
        return EXIT_INTERRUPTED
    except NonFiniteLoss as e:  # the losses are averaged over the ranks: every rank stops at the same step
        say(f"error: {e}")
        return EXIT_NONFINITE
    except SharedError as e:
        say(f"error: {e}")
        return 2
    except UserError as e:  # this rank's own (out of memory): the others learn of it from torchrun
        rank = f"rank {dist.rank}: " if dist.active else ""
        print(f"error: {rank}{e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not (dist.active and is_peer_failure(e)):
            raise
        print(f"rank {dist.rank} stopped: another rank is gone (its message, if any, is above)", file=sys.stderr)
        return 1
    finally:
        dist.stop()
    if not dist.is_main:
        return 0
    print(done_line(cfg, trainer), file=sys.stderr)
    return 0


def done_line(cfg: TrainConfig, run) -> str:
    """What this process did, what the run holds, when it reached --quality-fid, and what to run next."""
    out, first, last, s = run.out, run.first_epoch, run.state.epoch, run.state
    if first > last:
        did = f"nothing to train: the run already holds {last} epochs (--epochs {cfg.epochs})"
    else:
        trained = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        did = f"trained {trained} in {run.wall_seconds / 60:.1f} min"
        if first > 1:
            did += f"; the run holds {last} epochs"
    if s.quality_epoch:
        did += (f"; FID vs training images first <= {cfg.quality_fid:g} at epoch {s.quality_epoch}, "
                f"{s.quality_wall_s / 60:.1f} min in")
    elif run.evaluator is not None:
        did += f"; FID vs training images never reached {cfg.quality_fid:g} (best {s.best_fid:.2f})"
    return (f"done: {did}; wrote {out / 'generator.pth'}, samples in {out / 'samples'}; "
            f"next: python -m exporter {out / 'generator.pth'}, then mnist-gen score for the test-set figures")
