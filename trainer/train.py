"""The training run: data on the device, the GAN step, logging, checkpoints, artifacts."""

from __future__ import annotations

import copy
import json
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infer.errors import UserError
from infer.files import atomic_path, remove_stale_temporaries
from infer.score import CLASSIFIER

from . import __version__, artifacts
from .checkpoint import (
    CHECKPOINT_FORMAT,
    discriminator_file,
    generator_file,
    generator_from_file,
    load_file,
    save_atomic,
)
from .config import TrainConfig
from .data import InMemoryBatches, load_dataset, to_float
from .distributed import Distributed
from .losses import LOSSES, R1_EVERY, gradient_penalty, r1_penalty
from .model import Discriminator, Generator, ModelConfig, build_models
from .monitor import AUX_ACCURACY, METRIC_NAMES, RED, Health, RunningMetrics, within_class_spread
from .tracking import Tracking

EXIT_INTERRUPTED = 130
EXIT_NONFINITE = 3


class TrainingStopped(Exception):
    """Training ended early on purpose. Not a UserError, so `except UserError` never swallows Ctrl-C."""


class NonFiniteLoss(TrainingStopped):
    pass


class Interrupted(TrainingStopped):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """auto = bf16 autocast where the hardware runs it natively, else fp32 (what it gives: docs/performance.md)."""
    if name != "auto":
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("--precision bf16: this GPU does not support bfloat16")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


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


def available_memory(device: torch.device) -> int | None:
    """Bytes the run can still allocate on `device`, or None where that cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_model_fits(model_cfg: ModelConfig, device: torch.device, classifier: bool = False) -> None:
    """Refuse, before allocating anything, models whose weights, gradients and Adam state cannot fit."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        generator, discriminator = Generator(model_cfg), Discriminator(model_cfg, classifier)
    parameters = sum(p.numel() for m in (generator, discriminator) for p in m.parameters())
    needed = parameters * 4 * 4  # fp32 weights, their gradients, Adam's two moments
    available = available_memory(device)
    if available is not None and needed > available:
        raise UserError(f"the models have {parameters / 1e6:,.0f}M parameters and need {needed / 2**30:,.1f} GiB for "
                        f"weights, gradients and Adam state; {available / 2**30:,.1f} GiB is available on {device}: "
                        "lower --latent-dim, --g-width, --d-width or --d-blocks")


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class Trainer:
    def __init__(self, cfg: TrainConfig, dist: Distributed | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.dist = dist or Distributed()  # a world of one unless torchrun started this process
        self.use_compile = cfg.compile  # no gain measured on CPU (docs/performance.md): opt-in
        self.loss = LOSSES[cfg.loss]
        self.stop_signal: int | None = None

        # Everything that can be refused is checked before any file is touched or any model built;
        # under torchrun a refusal on any rank stops every rank, and is printed once.
        with self.dist.all_or_none():
            self.device = resolve_device(self.dist.device_name(cfg.device))
            self.precision = resolve_precision(cfg.precision, self.device)
            data = load_dataset(cfg.dataset, "train", cfg.data_dir, cfg.image_size, cfg.channels)
            if cfg.limit is not None:
                data = data.take(cfg.limit)
            step_images = cfg.batch_size * self.dist.world_size
            if step_images > len(data.images):
                per_rank = f" x {self.dist.world_size} processes" if self.dist.active else ""
                raise UserError(f"--batch-size {cfg.batch_size}{per_rank} is larger than the training set "
                                f"({len(data.images)} images)")
            cfg.image_size, cfg.channels = data.images.shape[1], data.channels  # what the run really uses, recorded
            self.model_cfg = cfg.model_config(data)
            if not self.model_cfg.conditional and cfg.aux_weight:
                option = "--aux-weight"
                why = "--unconditional" if cfg.unconditional else "the data has no classes (a flat folder)"
                raise UserError(f"{option} needs labels, and this run has none: {why}")
            if cfg.aux_weight is None:  # the loss's default, where there are labels to classify
                cfg.aux_weight = self.loss.aux_weight if self.model_cfg.conditional else 0.0
            check_model_fits(self.model_cfg, self.device, classifier=cfg.aux_weight > 0)
            if cfg.wandb:
                Tracking.check_wandb()
            if self.dist.is_main:
                for note in data.notes:
                    print(f"note: {note}", file=sys.stderr)
                if data.labels is None and not cfg.unconditional:
                    print("note: the data has no classes (a flat folder): training an unconditional model",
                          file=sys.stderr)
                self._prepare_out()

        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

        torch.manual_seed(cfg.seed)
        self.generator, self.discriminator = build_models(self.model_cfg, classifier=cfg.aux_weight > 0)
        for model in (self.generator, self.discriminator):
            model.to(self.device, memory_format=torch.channels_last)
        # ...except G's first layer, which runs as a matmul: a channels_last weight would be copied
        # back to row-major three times a step (docs/performance.md).
        first = self.generator.parts.first
        first.weight.data = first.weight.data.contiguous()
        # The averaged G (--ema) is what gets evaluated, sampled and exported; G itself keeps training.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if cfg.ema else None
        # fused Adam: one kernel per parameter group instead of a dozen per tensor
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=betas, fused=True)
        # Each rank draws its own noise (rank 0's is the single-process run's), and its own share of the data.
        self.noise = torch.Generator(self.device).manual_seed(cfg.seed + self.dist.rank)
        self.aux_accuracy = torch.zeros((), device=self.device)  # --aux-weight: logged, refreshed by each G step
        self.state = RunState()

        x = torch.from_numpy(data.images.copy()).to(self.device)  # uint8, converted per batch
        y = torch.from_numpy(data.labels if data.labels is not None else np.zeros(len(x), np.int64)).to(self.device)
        self.batches = InMemoryBatches(x, y, cfg.batch_size, cfg.seed, self.dist)

        # FID needs a scorer for this data: OUT/scorer (python -m trainer.classifier), or the bundled MNIST one.
        # Its reference is the training images, so choosing the best epoch never looks at the test set.
        # Under torchrun rank 0 alone scores (its OUT/scorer), and tells the others whether it does.
        self.evaluator = None
        with self.dist.all_or_none():
            if cfg.eval_every and self.dist.is_main:
                from .evaluate import Evaluator

                own = self.out / "scorer"
                if (own / CLASSIFIER.name).is_file():
                    self.evaluator = Evaluator.for_run(self.model_cfg, data, cfg.eval_samples, scorer=own)
                elif cfg.dataset == "mnist" and cfg.channels == 1:
                    self.evaluator = Evaluator.for_run(self.model_cfg, data, cfg.eval_samples)
                else:
                    print(f"note: no scorer for {cfg.dataset} data, so no FID or best-epoch selection; build one "
                          f"with python -m trainer.classifier --dataset {cfg.dataset} --data-dir DIR --out {own}",
                          file=sys.stderr)
        self.scoring = self.dist.from_main(self.evaluator is not None)

        # Under torchrun G and D train wrapped in DistributedDataParallel (gradients averaged over the ranks).
        # G's step runs D frozen, through D itself: DDP would wait for D gradients that step never makes.
        g = self.dist.wrap(self.generator, self.device)
        d = self.dist.wrap(self.discriminator, self.device)
        compiled = torch.compile if self.use_compile else (lambda model: model)
        self.g_step, self.d_forward = compiled(g), compiled(d)
        self.d_frozen = self.d_forward if d is self.discriminator else compiled(self.discriminator)
        self.tracking = Tracking()  # nothing tracked until run() starts it on rank 0

    def _prepare_out(self) -> None:
        try:
            (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            with atomic_path(self.out / ".write_test") as tmp:
                tmp.write_text("ok")
            (self.out / ".write_test").unlink()
        except OSError as e:
            raise UserError(f"--out {self.out}: not writable ({e.strerror or e})") from None
        # A run killed with SIGKILL mid-write leaves its temporary file; the next run in this --out sweeps them.
        for folder in (self.out, self.out / "checkpoints", self.out / "samples"):
            remove_stale_temporaries(folder)

    # ---- checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> dict:
        s = self.state
        return {
            "format": CHECKPOINT_FORMAT,
            "generator": generator_file(self.generator, s.epoch),
            "generator_ema": generator_file(self.generator_ema, s.epoch) if self.generator_ema else None,
            "discriminator": discriminator_file(self.discriminator, s.epoch),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "epoch": s.epoch,
            "step_in_epoch": s.step_in_epoch,
            "global_step": s.global_step,
            "world_size": self.dist.world_size,
            "rng": {
                "noise": self.noise.get_state(),
                "noise_ranks": self.dist.gather(self.noise.get_state()),  # every rank's, for --resume
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "config": self.cfg.to_dict(),
            "history": s.history,
            "best": {"fid": s.best_fid, "epoch": s.best_epoch},
            "time": {"wall_s": s.wall_s, "quality_epoch": s.quality_epoch, "quality_wall_s": s.quality_wall_s},
        }

    def load_checkpoint(self, ckpt: dict, path: Path) -> None:
        """Restore weights, optimizers, RNG states and position from a loaded checkpoint."""
        saved_world = ckpt.get("world_size", 1)
        if saved_world != self.dist.world_size:
            # Each rank's share of the data and its noise depend on the world size: refuse rather than drift.
            raise UserError(f"{path} was written by {saved_world} process(es), this run has {self.dist.world_size}; "
                            f"resume with the same count ({_launch_hint(saved_world)})")
        try:
            self.generator.load_state_dict(ckpt["generator"]["state_dict"])
            if self.generator_ema is not None:
                self.generator_ema.load_state_dict(ckpt["generator_ema"]["state_dict"])
            self.discriminator.load_state_dict(ckpt["discriminator"]["state_dict"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.noise.set_state(ckpt["rng"].get("noise_ranks", [ckpt["rng"]["noise"]])[self.dist.rank])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if ckpt["rng"]["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
            self.state = RunState(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"], list(ckpt["history"]),
                                  float(ckpt["best"]["fid"]), int(ckpt["best"]["epoch"]),
                                  **ckpt.get("time", {}))  # checkpoints from before time-to-quality lack it
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise UserError(f"{path}: checkpoint does not fit this model ({str(e).splitlines()[0][:160]})") from None
        # Rewrite the metrics log so it holds exactly the history of the resumed run.
        if self.dist.is_main:
            with atomic_path(self.out / "metrics.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(h) + "\n" for h in self.state.history))

    def save_checkpoint(self) -> Path:
        """Every rank takes part (each gives its noise state); rank 0 alone writes."""
        path = self.out / "checkpoints" / "last.pt"
        checkpoint = self.checkpoint()
        if self.dist.is_main:
            save_atomic(checkpoint, path)
        return path

    # ---- the step ----------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor, labels: torch.Tensor, targets: dict) -> tuple:
        """One D step, and a G step every --n-critic steps; the loss (trainer/losses.py) is the only seam.

        Returns the metrics to log (METRIC_NAMES, then AUX_ACCURACY with --aux-weight) and G's images."""
        cfg, g, d, loss = self.cfg, self.g_step, self.d_forward, self.loss
        cond = labels if self.model_cfg.conditional else None
        z = torch.randn(len(real), cfg.latent_dim, device=self.device, generator=self.noise)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

        # D: real images up, generated ones (same labels) down, as the loss measures it.
        r1 = cfg.r1 > 0 and self.state.global_step % R1_EVERY == 0
        if r1:
            real = real.detach().requires_grad_(True)
        with autocast:
            fake = g(z, cond)
            scores_real = d(real, cond).float()
            scores_fake = d(fake.detach(), cond).float()
            loss_d = loss.d(scores_real, scores_fake, targets)
            if cfg.aux_weight:  # AC-GAN's classifier, trained on real images only, so G cannot teach it its errors
                loss_d = loss_d + nn.functional.cross_entropy(d(real.detach(), classify=True).float(), cond)
            if loss.gradient_penalty:
                loss_d = loss_d + cfg.gp_weight * gradient_penalty(d, real, fake.detach(), cond, self.noise)
        if r1:  # lazily, as StyleGAN2 does: every R1_EVERY-th D step, weighted by R1_EVERY to keep its strength
            loss_d = loss_d + cfg.r1 / 2 * R1_EVERY * r1_penalty(scores_real, real)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        if (self.state.global_step + 1) % cfg.n_critic:
            # A critic-only step: G does not move; its loss is logged as D saw the batch before its step.
            loss_g = loss.g(scores_fake.detach(), targets)
        else:
            # G: make D score its images as real. D's own weight gradients are not needed here,
            # so freeze D for this backward instead of computing and discarding them.
            self.discriminator.requires_grad_(False)
            with autocast:
                loss_g = loss.g(self.d_frozen(fake, cond).float(), targets)
                if cfg.aux_weight:  # ...and read as the digit asked for
                    read_as = self.d_frozen(fake, classify=True).float()
                    loss_g = loss_g + cfg.aux_weight * nn.functional.cross_entropy(read_as, cond)
                    self.aux_accuracy = (read_as.argmax(1) == cond).float().mean().detach()
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            self.discriminator.requires_grad_(True)
            if self.generator_ema is not None:
                self._update_ema()
        shown = (loss_d, loss_g, loss.show(scores_real).mean(), loss.show(scores_fake).mean())
        if cfg.aux_weight:  # on critic-only steps, that of G's last step
            shown += (self.aux_accuracy,)
        return *shown, fake

    def _decay_learning_rates(self) -> None:
        """--lr-decay-epochs N (default: half of --epochs): both rates fall linearly to 0 over the last N epochs."""
        cfg, steps = self.cfg, self.batches.steps_per_epoch
        left = cfg.epochs * steps - self.state.global_step
        factor = min(1.0, left / (cfg.decay_epochs * steps))
        for optimizer, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr * factor

    # ---- the run -----------------------------------------------------------------------------

    def run(self, progress: bool = True) -> None:
        """Train to cfg.epochs. A bar on a terminal; otherwise (logs, CI) one line per log point."""
        cfg, s = self.cfg, self.state
        started = time.perf_counter()
        progress = progress and self.dist.is_main  # rank 0 speaks for the run
        if self.dist.is_main:
            self.write_static_artifacts()
            self.tracking = Tracking(self.out, cfg, self.state.global_step)
            print(self._start_line(), file=sys.stderr, flush=True)
        b = cfg.batch_size
        targets = {
            "real": torch.full((b,), cfg.real_label, device=self.device),
            "fake": torch.full((b,), cfg.fake_label, device=self.device),
            "ones": torch.ones(b, device=self.device),
        }
        names = METRIC_NAMES + ((AUX_ACCURACY,) if cfg.aux_weight else ())
        metrics, health = RunningMetrics(self.device, names), Health(self.loss)
        self.first_epoch = s.epoch + 1  # what this process trains; the run may hold more (--resume)
        self.started, self.wall_before = started, s.wall_s
        previous_handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while s.epoch < cfg.epochs:
                epoch = s.epoch + 1
                self.train_epoch(epoch, targets, metrics, health, progress)
                s.epoch, s.step_in_epoch = epoch, 0
                self.end_of_epoch(epoch)
        except Interrupted:
            if self.generator_ema is not None:
                self._recalibrate_ema()
            s.wall_s = self._wall()
            path = self.save_checkpoint()
            why = signal.Signals(self.stop_signal).name if self.stop_signal else "stopped on another rank"
            raise Interrupted(
                f"{why}: saved {path} (epoch {s.epoch + 1}, step {s.step_in_epoch} "
                f"of {self.batches.steps_per_epoch}); continue with --resume --out {self.out}"
            ) from None
        except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(e):
                raise
            size = f"{cfg.image_size}x{cfg.image_size}"
            raise UserError(f"out of memory on {self.device} at --batch-size {cfg.batch_size} ({size} images): "
                            f"lower --batch-size; {self._last_good()}") from None
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            self.tracking.close()
            # The DDP wrappers hold the process group: dropped here, Distributed.stop() frees it.
            self.g_step = self.d_forward = self.d_frozen = None
        if self.dist.is_main:
            self.write_final_artifacts()
        self.dist.barrier()  # the ranks leave together: none tears gloo down while rank 0 still writes
        self.wall_seconds = time.perf_counter() - started

    def _start_line(self) -> str:
        """What the run will do, and on what: the precision decides the speed (docs/performance.md)."""
        cfg, batches = self.cfg, self.batches
        precision = self.precision
        if cfg.precision == "auto" and precision == "fp32" and self.device.type == "cpu":
            precision += " (this CPU has no native bf16)"
        processes = f" x {self.dist.world_size} processes" if self.dist.active else ""
        first = self.state.epoch + 1
        epochs = f"epoch {first}" if first == cfg.epochs else f"epochs {first}-{cfg.epochs}"
        return (f"training on {self.device}, {precision}: {len(batches.images):,} {cfg.dataset} images, "
                f"{batches.steps_per_epoch} steps of {cfg.batch_size}{processes} per epoch, "
                f"{epochs}, loss {cfg.loss}; writing {self.out}")

    def train_epoch(self, epoch: int, targets: dict, metrics: RunningMetrics, health: Health, progress: bool) -> None:
        from tqdm import tqdm

        cfg, s, steps = self.cfg, self.state, self.batches.steps_per_epoch
        tty = sys.stderr.isatty()
        with tqdm(total=steps, initial=s.step_in_epoch, unit="step", desc=f"epoch {epoch}/{cfg.epochs}",
                  disable=not (progress and tty), dynamic_ncols=True, file=sys.stderr) as bar:
            tick, images_since = time.perf_counter(), 0
            for real, labels in self.batches.epoch(epoch, s.step_in_epoch):
                if cfg.decay_epochs:
                    self._decay_learning_rates()
                *values, fake = self.train_step(real, labels, targets)
                metrics.add(*values)
                s.step_in_epoch += 1
                s.global_step += 1
                images_since += cfg.batch_size * self.dist.world_size  # the whole run's images, every rank's
                bar.update(1)
                if s.global_step % cfg.log_every == 0 or s.step_in_epoch == steps:
                    now = time.perf_counter()
                    record = self._log_point(metrics, health, real, labels, fake, images_since / (now - tick))
                    tick, images_since = now, 0
                    bar.set_postfix_str(_postfix(record, tty, self.loss.shown))
                    if progress and not tty:
                        line = _postfix(record, False, self.loss.shown)
                        print(f"epoch {epoch} step {s.step_in_epoch}/{steps}  {line}", file=sys.stderr, flush=True)
                if self.dist.any(self.stop_signal is not None):  # every rank stops at the same step
                    raise Interrupted

    def _wall(self) -> float:
        """Seconds this run has trained, evaluations included, over all its processes (--resume)."""
        return self.wall_before + time.perf_counter() - self.started

    def _on_signal(self, signum, _frame) -> None:
        # A second Ctrl-C: the user means it. Not under torchrun, where one Ctrl-C arrives twice (from the
        # terminal and from torchrun) and torchrun itself kills ranks still running 30 s later.
        if self.stop_signal is not None and not self.dist.launched:
            raise KeyboardInterrupt
        self.stop_signal = signum

    def _log_point(self, metrics, health, real, labels, fake, images_per_s) -> dict:
        s = self.state
        values, nonfinite = metrics.read(self.dist)
        if nonfinite:
            # Once a loss is non-finite the weights are poisoned, so every later step is too.
            bad_step = s.global_step - nonfinite + 1
            raise NonFiniteLoss(
                f"non-finite loss at epoch {s.epoch + 1}, step {bad_step}; training stopped "
                f"(try a lower learning rate); {self._last_good()}"
            )
        cond = labels if self.model_cfg.conditional else None
        diversity = within_class_spread(fake, cond) / max(within_class_spread(real, cond), 1e-8)
        diversity = self.dist.mean(torch.tensor([diversity], dtype=torch.float64)).item()  # over the ranks' batches
        record = {"epoch": s.epoch + 1, "step": s.global_step, **values, "pixel_diversity": diversity,
                  "images_per_s": images_per_s}
        record["health"], record["health_reason"] = health.update(record)
        self._log(record)
        return record

    def _last_good(self) -> str:
        if not self.state.epoch:
            return "no checkpoint was saved yet"
        return f"last good checkpoint: {self.out / 'checkpoints' / 'last.pt'} (epoch {self.state.epoch})"

    def _log(self, record: dict) -> None:
        """Keep a record in the history and append it to metrics.jsonl (one line, flushed at once).

        Appended, not rewritten, so a kill can at worst cut its last line; --resume rewrites the file
        from the checkpoint's history.
        """
        self.state.history.append(record)
        if self.dist.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self.tracking.log(record)

    def end_of_epoch(self, epoch: int) -> None:
        cfg, s, out = self.cfg, self.state, self.out
        scores = None
        if self.generator_ema is not None:
            self._recalibrate_ema()
        if self.scoring and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            # Scored once, on rank 0; every rank gets the scores, so all agree on the best epoch.
            scores = self.dist.from_main(self._score() if self.dist.is_main else None)
            s.wall_s = scores["wall_s"]
            if not s.quality_epoch and scores["fid_train"] <= cfg.quality_fid:
                s.quality_epoch, s.quality_wall_s = epoch, s.wall_s
                scores["time_to_quality_s"] = s.wall_s
            self._log({"epoch": epoch, "step": s.global_step, **scores})
            improved = scores["fid_train"] < s.best_fid
            if improved:
                s.best_fid, s.best_epoch = scores["fid_train"], epoch
        s.wall_s = self._wall()
        last = self.save_checkpoint()
        if not self.dist.is_main:  # the files and the epoch's line below are rank 0's
            return
        if epoch % cfg.save_every == 0 or epoch == cfg.epochs:
            self._copy(last, out / "checkpoints" / f"epoch_{epoch:03d}.pt")
        if scores is not None and improved:
            self._copy(last, out / "checkpoints" / "best.pt")
        if epoch % cfg.sample_every == 0 or epoch == cfg.epochs:
            grid = artifacts.save_sample_grid(self.sampler, out / "samples" / f"epoch_{epoch:03d}.png")
            self.tracking.image("samples", grid, s.global_step)
            artifacts.save_progress_gif(out / "samples", out / "progress.gif")
        artifacts.save_loss_curve(s.history, out / "loss_curve.png", self.loss.shown)
        last = [h for h in s.history if "loss_d" in h][-1]
        summary = f"epoch {epoch}/{cfg.epochs} done  {_postfix(last, sys.stderr.isatty(), self.loss.shown)}"
        if scores is not None:
            summary += f"  FID(train)={scores['fid_train']:.2f} (best {s.best_fid:.2f} at epoch {s.best_epoch})"
            if "fid_live" in scores:
                summary += f" live G {scores['fid_live']:.2f}"
            summary += f" diversity={scores['diversity']:.2f}"
        print(summary, file=sys.stderr, flush=True)
        if last["health"] == RED:
            print(f"warning: training looks unhealthy: {last['health_reason']}", file=sys.stderr)
        if scores is not None and scores["diversity"] < 0.3:
            print(f"warning: training looks unhealthy (red): within-class diversity {scores['diversity']:.2f} of real; "
                  "G is drawing near-identical images per class", file=sys.stderr)

    def _score(self) -> dict:
        scores = self.evaluator(self.sampler)
        scores["fid_train"] = scores.pop("fid")  # against the training images: selection, not the report
        if self.generator_ema is not None:  # what the average buys, epoch by epoch
            scores["fid_live"] = self.evaluator(self.generator)["fid"]
        scores["wall_s"] = self._wall()
        return scores

    @torch.no_grad()
    def _update_ema(self) -> None:
        # The decay ramps up to --ema (as TensorFlow's ExponentialMovingAverage does with num_updates),
        # so early in a run the average is not dragged down by the random weights of step 0.
        step = self.state.global_step
        decay = min(self.cfg.ema, (1 + step) / (10 + step))
        ema, live = self.generator_ema, self.generator
        torch._foreach_lerp_(list(ema.parameters()), list(live.parameters()), 1.0 - decay)

    @torch.no_grad()
    def _recalibrate_ema(self, batches: int = 16, batch_size: int = 256) -> None:
        """Give the averaged weights BatchNorm statistics of their own, measured on fixed noise.

        The live G's running statistics describe the live weights' activations, not the averaged
        ones'. Deterministic (its own seeded noise), so resuming stays exact.
        """
        ema, cfg = self.generator_ema, self.model_cfg
        norms = [m for m in ema.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over all the batches below
        noise = torch.Generator(self.device).manual_seed(self.cfg.seed)
        labels = torch.arange(batch_size, device=self.device) % max(cfg.num_classes, 1)
        ema.train()
        for _ in range(batches):
            z = torch.randn(batch_size, cfg.latent_dim, device=self.device, generator=noise)
            ema(z, labels if cfg.conditional else None)
        ema.eval()
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum

    @property
    def sampler(self):
        """The G users see: the averaged one when --ema is on."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)

    def write_static_artifacts(self) -> None:
        info = {
            "config": self.cfg.to_dict(),
            "model": self.model_cfg.to_dict(),
            "resolved": {"device": str(self.device), "precision": self.precision, "compile": self.use_compile,
                         "world_size": self.dist.world_size, "lr_decay_epochs": self.cfg.decay_epochs,
                         "d_x_and_d_gz": self.loss.shown},  # what metrics.jsonl's d_x, d_gz are
            "versions": {"mnist_gen": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cuda_device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
            },
        }
        artifacts.save_json(info, self.out / "config.json")
        artifacts.save_model_summary(self.generator, self.discriminator, self.out / "model_summary.txt")

    def write_final_artifacts(self) -> None:
        out, epochs = self.out, self.state.epoch
        best = out / "checkpoints" / "best.pt"
        generator = self.sampler
        if self.cfg.keep == "best" and self.state.best_epoch and best.is_file():
            generator, info = generator_from_file(load_file(best), best)
            generator.to(self.device)
            epochs = info["epochs"]
            print(f"generator.pth is from epoch {epochs}, the best FID against the training images "
                  f"({self.state.best_fid:.2f}); --keep last for the final epoch's", file=sys.stderr)
        save_atomic(generator_file(generator, epochs), out / "generator.pth")
        save_atomic(discriminator_file(self.discriminator, epochs), out / "discriminator.pth")
        spread = torch.linspace(0, len(self.batches.images) - 1, min(64, len(self.batches.images))).long()
        real, labels = to_float(self.batches.images[spread]), self.batches.labels[spread]  # every class, not the first
        artifacts.save_real_vs_fake(generator, real, labels, out / "real_vs_fake.png")
        artifacts.save_interpolation(generator, out / "interpolation.png")


def _postfix(m: dict, color: bool, shown: str = "probability") -> str:
    health = m["health"]
    if color:
        code = {"green": "32", "yellow": "33", "red": "31"}[health]
        health = f"\033[{code}m{health}\033[0m"
    d = "D" if shown == "probability" else "score"  # a critic's raw score is no probability: say so
    aux = f"read-as-asked={m[AUX_ACCURACY]:.3f} " if AUX_ACCURACY in m else ""
    text = (f"loss_d={m['loss_d']:.3f} loss_g={m['loss_g']:.3f} {d}(x)={m['d_x']:.3f} {d}(G(z))={m['d_gz']:.3f} "
            f"{aux}{m['images_per_s']:.0f} img/s health={health}")
    return text if m["health"] == "green" else f"{text} ({m['health_reason']})"


def _launch_hint(world_size: int) -> str:
    return "python -m trainer" if world_size == 1 else f"torchrun with {world_size} processes in all"


def train(cfg: TrainConfig, checkpoint: dict | None = None, progress: bool = True,
          dist: Distributed | None = None) -> Trainer:
    trainer = Trainer(cfg, dist)
    if checkpoint is not None:
        with trainer.dist.all_or_none():
            trainer.load_checkpoint(checkpoint, Path(cfg.resume))
    trainer.run(progress=progress)
    return trainer
