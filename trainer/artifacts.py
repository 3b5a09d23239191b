"""What a run shows the user: sample grids, the progress GIF, plots, the model summary, config.json,
and the files it ends with (generator.pth, discriminator.pth, real_vs_fake.png, interpolation.png).

Each file is written atomically (see infer.files.atomic_path).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infer.files import atomic_path, make_grid, save_gif, save_png, to_uint8, upscale
from infer.latent import slerp

from . import __version__
from .checkpoint import discriminator_file, generator_file, generator_from_file, load_file, save_atomic
from .data import to_float
from .model import Generator, evaluating


def fixed_inputs(generator: Generator, columns: int = 10, seed: int = 1234):
    """Fixed noise for sample grids: one row per digit (conditional) sharing the same z per column."""
    cfg = generator.cfg
    g = torch.Generator().manual_seed(seed)
    if cfg.conditional:
        z = torch.randn(columns, cfg.latent_dim, generator=g).repeat(cfg.num_classes, 1)
        labels = torch.arange(cfg.num_classes).repeat_interleave(columns)
        return z, labels, columns
    return torch.randn(64, cfg.latent_dim, generator=g), None, 8


@torch.no_grad()
def generate(generator: Generator, z: torch.Tensor, labels: torch.Tensor | None) -> np.ndarray:
    """Run G in eval mode (BatchNorm running statistics) on its device, back to numpy uint8."""
    device = next(generator.parameters()).device
    with evaluating(generator):
        images = generator(z.to(device), None if labels is None else labels.to(device))
    return to_uint8(images.float().cpu().numpy())


def save_sample_grid(generator: Generator, path: Path) -> np.ndarray:
    z, labels, nrow = fixed_inputs(generator)
    grid = upscale(make_grid(generate(generator, z, labels), nrow), 2)
    save_png(path, grid)
    return grid


def save_progress_gif(samples_dir: Path, path: Path) -> None:
    from PIL import Image

    frames = [np.asarray(Image.open(p)) for p in sorted(samples_dir.glob("epoch_*.png"))]
    if frames:
        save_gif(path, frames)


def save_progress_collage(samples_dir: Path, path: Path, columns: int = 5) -> None:
    """training_progress.png: every epoch's sample grid side by side, oldest first (the GIF, as one picture)."""
    from PIL import Image

    grids = [np.asarray(Image.open(p))[::2, ::2] for p in sorted(samples_dir.glob("epoch_*.png"))]  # 1x, not 2x
    if grids:
        save_png(path, make_grid(np.stack(grids), columns, padding=8, pad_value=255))


def save_real_vs_fake(generator: Generator, real: torch.Tensor, real_labels: torch.Tensor, path: Path) -> None:
    """Real images on the left, generated ones (same labels) on the right, 64 of each."""
    real, real_labels = real[:64].cpu(), real_labels[:64].cpu()
    z = torch.randn(len(real), generator.cfg.latent_dim, generator=torch.Generator().manual_seed(7))
    fake = generate(generator, z, real_labels if generator.cfg.conditional else None)
    left, right = make_grid(to_uint8(real.float().numpy()), 8), make_grid(fake, 8)
    gap = np.full((left.shape[0], 8, *left.shape[2:]), 255, np.uint8)
    save_png(path, upscale(np.concatenate([left, gap, right], axis=1), 2))


def save_interpolation(generator: Generator, path: Path, steps: int = 10) -> None:
    """Latent walks: one row per digit (conditional), or 8 walks (unconditional)."""
    cfg = generator.cfg
    g = torch.Generator().manual_seed(99)
    rows = cfg.num_classes if cfg.conditional else 8
    ends = torch.randn(rows, 2, cfg.latent_dim, generator=g).numpy()
    z = torch.from_numpy(np.concatenate([slerp(a, b, steps) for a, b in ends]))
    labels = torch.arange(rows).repeat_interleave(steps) if cfg.conditional else None
    save_png(path, upscale(make_grid(generate(generator, z, labels), steps), 2))


def save_loss_curve(history: list[dict], path: Path, shown: str = "probability") -> None:
    """G and D losses, D(x) and D(G(z)) (probabilities, or a critic's raw scores) and the selection FID."""
    evals = [h for h in history if "fid_train" in h]
    history = [h for h in history if "loss_d" in h]
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    rows = 3 if evals else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3 * rows), sharex=True)
    ax_loss, ax_d = axes[0], axes[1]
    if evals:
        fids = [h["fid_train"] for h in evals]
        axes[2].plot([h["step"] for h in evals], fids, "o-", label="G (the averaged one under --ema)")
        axes[2].set_yscale("log")  # from hundreds in epoch 1 to about 10: a linear axis hides the end
        axes[2].set_ylabel("FID vs training images\n(selection; lower is better)")
        axes[2].legend()
    ax_loss.plot(steps, [h["loss_d"] for h in history], label="loss D")
    ax_loss.plot(steps, [h["loss_g"] for h in history], label="loss G")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    if shown == "probability":
        ax_d.plot(steps, [h["d_x"] for h in history], label="D(x)")
        ax_d.plot(steps, [h["d_gz"] for h in history], label="D(G(z))")
        ax_d.set_ylim(0, 1)
    else:  # a critic's raw score is not a probability: no [0, 1] axis
        ax_d.plot(steps, [h["d_x"] for h in history], label="mean score of real images")
        ax_d.plot(steps, [h["d_gz"] for h in history], label="mean score of generated images")
        ax_d.set_ylabel("D's score")
    if "aux_acc" in history[-1]:  # --aux-weight
        ax_acc = ax_d if shown == "probability" else ax_d.twinx()
        ax_acc.plot(steps, [h["aux_acc"] for h in history], "k:", label="G's images read as asked (D's classifier)")
        ax_acc.set_ylim(0, 1)
        if ax_acc is not ax_d:
            ax_acc.legend(loc="lower right")
    axes[-1].set_xlabel("step")
    ax_d.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def model_summary(model: nn.Module, *inputs: torch.Tensor) -> str:
    """Each leaf layer with its output shape and parameter count, and the totals."""
    rows, hooks = [], []

    def hook_for(name):
        def hook(module, _inputs, output):
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append((f"{name} ({module.__class__.__name__})", tuple(output.shape), params))

        return hook

    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad(), evaluating(model):
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    total = sum(p.numel() for p in model.parameters())
    lines = [f"{model.__class__.__name__}", f"{'layer':<36}{'output shape':<22}{'params':>12}"]
    lines += [f"{name:<36}{str(list(shape)):<22}{params:>12,}" for name, shape, params in rows]
    lines.append(f"{'total parameters':<58}{total:>12,}")
    return "\n".join(lines)


def save_model_summary(generator: nn.Module, discriminator: nn.Module, path: Path) -> None:
    cfg = generator.cfg
    device = next(generator.parameters()).device
    z = torch.zeros(2, cfg.latent_dim, device=device)
    labels = torch.zeros(2, dtype=torch.long, device=device) if cfg.conditional else None
    images = torch.zeros(2, cfg.channels, cfg.image_size, cfg.image_size, device=device)
    text = model_summary(generator, z, labels) + "\n\n" + model_summary(discriminator, images, labels) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_json(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def save_run_info(run) -> None:
    """config.json (the options, the model, what was resolved, versions, machine) and model_summary.txt."""
    info = {
        "config": run.cfg.to_dict(),
        "model": run.generator.cfg.to_dict(),
        "resolved": {"device": str(run.device), "precision": run.precision, "compile": run.cfg.compile,
                     "world_size": run.dist.world_size, "lr_decay_epochs": run.cfg.decay_epochs,
                     "d_x_and_d_gz": run.step.loss.shown},  # what metrics.jsonl's d_x, d_gz are
        "versions": {"mnist_gen": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cuda_device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else None,
        },
    }
    save_json(info, run.out / "config.json")
    save_model_summary(run.generator, run.discriminator, run.out / "model_summary.txt")


def save_final(run) -> None:
    """generator.pth (the best epoch's unless --keep last), discriminator.pth, and two pictures of the G kept."""
    out, epochs = run.out, run.state.epoch
    best = out / "checkpoints" / "best.pt"
    generator = run.sampler
    if run.cfg.keep == "best" and run.state.best_epoch and best.is_file():
        generator, info = generator_from_file(load_file(best), best)
        generator.to(run.device)
        epochs = info["epochs"]
        print(f"generator.pth is from epoch {epochs}, the best FID against the training images "
              f"({run.state.best_fid:.2f}); --keep last for the final epoch's", file=sys.stderr)
    save_atomic(generator_file(generator, epochs), out / "generator.pth")
    save_atomic(discriminator_file(run.discriminator, epochs), out / "discriminator.pth")
    images = run.batches.images
    spread = torch.linspace(0, len(images) - 1, min(64, len(images))).long()
    real, labels = to_float(images[spread]), run.batches.labels[spread]  # every class, not the first
    save_real_vs_fake(generator, real, labels, out / "real_vs_fake.png")
    save_interpolation(generator, out / "interpolation.png")
