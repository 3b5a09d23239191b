"""`python -m trainer`: parse options into a TrainConfig, run, turn errors into one line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from infer.errors import UserError

from .config import TrainConfig

# On --resume every option defaults to the checkpoint's; these define the model and the optimisation,
# so giving a different value is an error rather than a silently different run.
LOCKED_ON_RESUME = (
    "batch_size", "latent_dim", "image_size", "unconditional", "lr_g", "lr_d", "beta1", "beta2",
    "real_label", "fake_label", "precision", "seed", "data_dir", "limit", "ema",
    "loss", "n_critic", "gp_weight", "d_norm", "spectral_norm", "lr_decay_epochs",
)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train a (conditional) DCGAN on MNIST and write generator.pth, checkpoints, samples and plots.",
        epilog="examples:\n  python -m trainer --epochs 30\n"
               "  python -m trainer --limit 2048 --epochs 1 --out runs/try\n"
               "  python -m trainer --resume            # continue artifacts/checkpoints/last.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # so we know which options the user gave
    )
    a = p.add_argument
    a("--epochs", type=int, help=f"epochs to train in total (default {d.epochs})")
    a("--batch-size", type=int, help=f"images per step (default {d.batch_size})")
    a("--latent-dim", type=int, help=f"size of the noise vector z (default {d.latent_dim})")
    a("--image-size", type=int, help="28 (native, default) or 64 (the DCGAN paper's stack)")
    a("--unconditional", action="store_true", help="train the classic DCGAN, whose G ignores labels")
    a("--loss", help="bce (the non-saturating DCGAN loss, default), hinge, wgan-gp (Gulrajani et al. 2017) or "
      "lsgan; each brings its own Adam defaults below")
    a("--lr-g", type=float, help=f"generator learning rate (default {d.lr_g}; wgan-gp: 1e-4)")
    a("--lr-d", type=float, help=f"discriminator learning rate (default {d.lr_d}; wgan-gp: 1e-4)")
    a("--beta1", type=float, help=f"Adam beta1 (default {d.beta1}; wgan-gp: 0.0)")
    a("--beta2", type=float, help=f"Adam beta2 (default {d.beta2}; wgan-gp: 0.9)")
    a("--n-critic", type=int, help="D (critic) steps per G step (default 1; wgan-gp: 5)")
    a("--gp-weight", type=float, help=f"weight of the gradient penalty, wgan-gp only (default {d.gp_weight})")
    a("--d-norm", help="D's normalisation: batch, layer or none (default: batch; wgan-gp: layer)")
    a("--spectral-norm", action=argparse.BooleanOptionalAction,
      help="spectral norm on every D layer, for any loss (default off)")
    a("--lr-decay-epochs", type=int,
      help="decay both learning rates linearly to 0 over the last N epochs; 0 = constant (default 0)")
    a("--real-label", type=float, help=f"D's target for real images, e.g. 0.9 for smoothing (default {d.real_label})")
    a("--fake-label", type=float, help=f"D's target for generated images (default {d.fake_label})")
    a("--device", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    a("--precision", choices=["auto", "fp32", "bf16"], help="auto = bf16 autocast where supported (default auto)")
    a("--compile", action=argparse.BooleanOptionalAction,
      help="torch.compile G and D (default off: no gain measured on CPU)")
    a("--seed", type=int, help=f"seed for weights, batches and noise (default {d.seed})")
    a("--out", help=f"output folder (default {d.out})")
    a("--data-dir", help="read the four MNIST IDX files (gzip or raw) from here instead of the bundled copy")
    a("--limit", type=int, help="train on the first N images only (quick tries and tests)")
    a("--resume", nargs="?", const="last", help="continue from OUT/checkpoints/last.pt, or from the given checkpoint")
    a("--save-every", type=int, help=f"also keep checkpoints/epoch_NNN.pt every N epochs (default {d.save_every})")
    a("--sample-every", type=int, help=f"write samples/epoch_NNN.png every N epochs (default {d.sample_every})")
    a("--log-every", type=int, help=f"read metrics from the device every N steps (default {d.log_every})")
    a("--eval-every", type=int, help="compute FID (as mnist-gen score does) every N epochs; 0 = never (default 1)")
    a("--eval-samples", type=int, help=f"images per FID evaluation (default {d.eval_samples})")
    a("--ema", type=float, help="keep an exponential moving average of G's weights with this decay (e.g. 0.999) "
      "and evaluate, sample and export it; 0 = off (default)")
    a("--keep", choices=["best", "last"], help="generator.pth from the best-FID epoch or the last (default best)")
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
    for key, value in given.items():
        if key in LOCKED_ON_RESUME and key in values and value != values[key]:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {value} does not match the checkpoint ({values[key]}); "
                            "drop it to resume, or start a new run in another --out")
    values.update(given)
    values["resume"] = str(path)
    return TrainConfig(**values), ckpt


def main(argv: list[str] | None = None) -> int:
    given = vars(build_parser().parse_args(argv))
    from .train import EXIT_INTERRUPTED, EXIT_NONFINITE, Interrupted, NonFiniteLoss, train

    try:
        cfg, ckpt = resolve_config(given)
        cfg.validate()
        trainer = train(cfg, ckpt)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NONFINITE
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
