"""`python -m trainer`: parse options into a TrainConfig, run, turn errors into one line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from infer.errors import UserError

from .config import TrainConfig
from .losses import R1_EVERY

# On --resume every option defaults to the checkpoint's; these define the model and the optimisation,
# so giving a different value is an error rather than a silently different run.
LOCKED_ON_RESUME = (
    "batch_size", "latent_dim", "g_width", "d_width", "d_blocks", "dataset", "image_size", "channels", "unconditional",
    "lr_g", "lr_d", "beta1", "beta2", "real_label", "fake_label", "precision", "seed", "data_dir", "limit", "ema",
    "loss", "n_critic", "gp_weight", "d_norm", "spectral_norm", "lr_decay_epochs", "r1", "aux_weight",
)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train a (conditional) DCGAN on MNIST (or your data) and write generator.pth, checkpoints, "
                    "samples and plots.",
        epilog="examples:\n  python -m trainer --epochs 30\n"
               "  python -m trainer --limit 2048 --epochs 1 --out runs/try\n"
               "  python -m trainer --resume            # continue artifacts/checkpoints/last.pt\n"
               "  python -m trainer --dataset fashion-mnist --data-dir data/fashion\n"
               "  python -m trainer --dataset folder --data-dir photos/ --image-size 64   # one subfolder per class\n"
               "  torchrun --nproc_per_node 4 -m trainer --epochs 30   # 4 processes (GPUs), DistributedDataParallel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # so we know which options the user gave
    )
    a = p.add_argument
    a("--epochs", type=int, help=f"epochs to train in total (default {d.epochs})")
    a("--batch-size", type=int, help=f"images per step and per process (default {d.batch_size}); under torchrun "
      "with N processes a step trains on N x batch-size images; nothing, learning rates included, is rescaled")
    a("--latent-dim", type=int, help=f"size of the noise vector z (default {d.latent_dim})")
    a("--g-width", type=int, help=f"G's width, ngf in pytorch/examples (default {d.g_width})")
    a("--d-width", type=int, help=f"D's width, ndf in pytorch/examples (default {d.d_width})")
    a("--d-blocks", type=int, help="3x3 conv blocks D adds at its smallest map, 7x7 for MNIST "
      f"(default {d.d_blocks}; 0 = the DCGAN paper's D)")
    a("--dataset",
      help="mnist (bundled, default); fashion-mnist, kmnist or idx (IDX files), cifar10 (binary version) or folder "
           "(PNG/JPEG, one subfolder per class or flat) read from --data-dir")
    a("--image-size", type=int, help="28, 32 or 64 (default: the data set's own: 28 for IDX sets, 32 for CIFAR-10, "
      "64 for folders; 64 is the DCGAN paper's stack)")
    a("--channels", type=int, help="1 grey or 3 RGB (default: the data's own)")
    a("--unconditional", action="store_true", help="train the classic DCGAN, whose G ignores labels")
    a("--loss", help="bce (the non-saturating DCGAN loss, default), hinge or wgan-gp (Gulrajani et al. 2017); "
      "each brings its own Adam defaults below")
    a("--lr-g", type=float, help=f"generator learning rate (default {d.lr_g}; wgan-gp: 1e-4)")
    a("--lr-d", type=float, help=f"discriminator learning rate (default {d.lr_d}; wgan-gp: 1e-4)")
    a("--beta1", type=float, help=f"Adam beta1 (default {d.beta1}; wgan-gp: 0.0)")
    a("--beta2", type=float, help=f"Adam beta2 (default {d.beta2}; hinge: 0.999; wgan-gp: 0.9)")
    a("--n-critic", type=int, help="D (critic) steps per G step (default 1; wgan-gp: 5)")
    a("--gp-weight", type=float, help=f"weight of the gradient penalty, wgan-gp only (default {d.gp_weight})")
    a("--d-norm", help="D's normalisation: batch, layer or none (default: batch; wgan-gp: layer)")
    a("--spectral-norm", action=argparse.BooleanOptionalAction,
      help="spectral norm on every D layer, for any loss (default off)")
    a("--r1", type=float, metavar="GAMMA",
      help="R1 penalty (Mescheder et al. 2018) on D's gradient at real images, weight GAMMA/2, applied every "
      f"{R1_EVERY}th D step; any loss; 0 = off (default {d.r1} for bce, 0 for the other losses)")
    a("--aux-weight", type=float, metavar="W",
      help="auxiliary classifier (AC-GAN, Odena et al. 2017): D also learns to classify real images without "
      "their labels, and G's loss adds W x its error on G's images; conditional runs; 0 = off (default 0.2 for "
      "bce, 0 for the other losses and for data without classes)")
    a("--lr-decay-epochs", type=int,
      help="decay both learning rates linearly to 0 over the last N epochs; 0 = constant (default: the "
      "last 40%%, round(0.4 x --epochs))")
    a("--real-label", type=float, help=f"D's target for real images, e.g. 0.9 for smoothing (default {d.real_label})")
    a("--fake-label", type=float, help=f"D's target for generated images (default {d.fake_label})")
    a("--device", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    a("--precision", choices=["auto", "fp32", "bf16"], help="auto = bf16 autocast where supported (default auto)")
    a("--compile", action=argparse.BooleanOptionalAction,
      help="torch.compile G and D (default off: no gain measured on CPU)")
    a("--seed", type=int, help=f"seed for weights, batches and noise (default {d.seed})")
    a("--out", help=f"output folder (default {d.out})")
    a("--data-dir", help="where the --dataset files are (MNIST: the bundled copy unless given)")
    a("--limit", type=int, help="train on the first N images only (quick tries and tests)")
    a("--resume", nargs="?", const="last", help="continue from OUT/checkpoints/last.pt, or from the given checkpoint")
    a("--save-every", type=int, help=f"also keep checkpoints/epoch_NNN.pt every N epochs (default {d.save_every})")
    a("--sample-every", type=int, help=f"write samples/epoch_NNN.png every N epochs (default {d.sample_every})")
    a("--log-every", type=int, help=f"read metrics from the device every N steps (default {d.log_every})")
    a("--eval-every", type=int, help="compute FID (as mnist-gen score does) every N epochs; 0 = never (default 1)")
    a("--eval-samples", type=int, help=f"images per FID evaluation (default {d.eval_samples})")
    a("--ema", type=float, help="keep an exponential moving average of G's weights with this decay and evaluate, "
      f"sample and export it; 0 = off, the live G (default {d.ema})")
    a("--keep", choices=["best", "last"], help="generator.pth from the best-FID epoch or the last (default best)")
    a("--tensorboard", action=argparse.BooleanOptionalAction,
      help="write TensorBoard event files to OUT/tensorboard (default on)")
    a("--wandb", metavar="PROJECT", help="log to this Weights & Biases project too (pip install -e \".[wandb]\"; "
      "WANDB_MODE=offline works without network)")
    a("--quality-fid", type=float, help="report the wall time at which the selection FID (vs training-set "
      f"statistics) first falls to this (default {d.quality_fid})")
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
    values = {k: v for k, v in ckpt.get("config", {}).items() if k in names}
    values.setdefault("r1", 0.0)  # checkpoints from before --r1 trained without it: resume them the same way
    removed_option(ckpt.get("config", {}), path)
    values.setdefault("aux_weight", 0.0)  # nor --aux-weight
    values.setdefault("d_blocks", 0)  # nor --d-blocks
    for key, value in given.items():
        if key in LOCKED_ON_RESUME and key in values and value != values[key]:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {value} does not match the checkpoint ({values[key]}); "
                            "drop it to resume, or start a new run in another --out")
    values.update(given)
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

    dist.start()
    try:
        with dist.all_or_none():
            cfg, ckpt = resolve_config(given)
            cfg.validate()
        same_everywhere(dist, cfg.to_dict(), local=("out", "data_dir", "resume"))
        trainer = train(cfg, ckpt, dist=dist)
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
    out, first, last = trainer.out, trainer.first_epoch, trainer.state.epoch
    if first > last:
        did = f"nothing to train: the run already holds {last} epochs (--epochs {cfg.epochs})"
    else:
        trained = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        did = f"trained {trained} in {trainer.wall_seconds / 60:.1f} min"
        if first > 1:
            did += f"; the run holds {last} epochs"
    s = trainer.state
    if s.quality_epoch:
        did += (f"; FID vs training images first <= {cfg.quality_fid:g} at epoch {s.quality_epoch}, "
                f"{s.quality_wall_s / 60:.1f} min in")
    elif trainer.evaluator is not None:
        did += f"; FID vs training images never reached {cfg.quality_fid:g} (best {s.best_fid:.2f})"
    print(f"done: {did}; wrote {out / 'generator.pth'}, samples in {out / 'samples'}; "
          f"next: python -m exporter {out / 'generator.pth'}, then mnist-gen score for the test-set figures",
          file=sys.stderr)
    return 0
