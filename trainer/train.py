"""The training loop, read top to bottom: `train` sets a run up, then for each epoch and batch
(1) updates D, (2) updates G, (3) moves G's weight average, and at each log point and epoch end
reads the metrics, scores, checkpoints and draws samples.

Each job lives in a module named for it: the step (step.py), the weight average (ema.py), checkpoints and
metrics.jsonl (checkpoint.py), evaluation and best-epoch choice (evaluate.py), what the user reads
(console.py), the device (device.py), the pictures and final files (artifacts.py).
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from infer.errors import UserError
from infer.files import atomic_path, remove_stale_temporaries

from . import artifacts, console
from .checkpoint import RunFiles, RunState, restore, training_checkpoint
from .config import TrainConfig
from .data import Dataset, InMemoryBatches
from .device import (
    check_model_fits,
    is_out_of_memory,
    moving_to,
    resolve_device,
    resolve_precision,
    use_fast_kernels,
)
from .distributed import Distributed
from .ema import EMA
from .evaluate import Evaluator, evaluator_for_run, score_epoch, select
from .model import Discriminator, Generator, ModelConfig, build_models
from .monitor import Health, RunningMetrics, within_class_spread
from .step import GanStep, set_learning_rates
from .tracking import Tracking

EXIT_INTERRUPTED = 130
EXIT_NONFINITE = 3


class TrainingStopped(Exception):
    """Training ended early on purpose. Not a UserError, so `except UserError` never swallows Ctrl-C."""


class NonFiniteLoss(TrainingStopped):
    pass


class Interrupted(TrainingStopped):
    pass


@dataclass(eq=False)
class Run:
    """What a training run holds: built once by `setup`, then advanced by the loop."""

    cfg: TrainConfig
    dist: Distributed
    device: torch.device
    precision: str
    generator: Generator
    discriminator: Discriminator
    ema: EMA | None  # --ema: the averaged G, which is evaluated, sampled and exported
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator  # each rank draws its own noise (rank 0's is the single-process run's)
    batches: InMemoryBatches
    step: GanStep | None
    evaluator: Evaluator | None  # rank 0's; every rank knows from `scoring` whether it scores
    scoring: bool
    files: RunFiles
    state: RunState = field(default_factory=RunState)
    tracking: Tracking = field(default_factory=Tracking)  # nothing tracked until the loop starts it on rank 0
    first_epoch: int = 1  # what this process trains; the run may hold more (--resume)
    wall_before: float = 0.0  # training seconds of the processes before this one (--resume)
    started: float = field(default_factory=time.perf_counter)
    wall_seconds: float = 0.0  # this process's time in train()

    @property
    def out(self) -> Path:
        return self.files.out

    @property
    def sampler(self) -> Generator:
        """The G users see: the averaged one when --ema is on."""
        return self.ema.model if self.ema is not None else self.generator

    def wall(self) -> float:
        """Seconds this run has trained, evaluations included, over all its processes (--resume)."""
        return self.wall_before + time.perf_counter() - self.started


def train(cfg: TrainConfig, data: Dataset, checkpoint: dict | None = None, progress: bool = True,
          dist: Distributed | None = None) -> Run:
    """Train to cfg.epochs (resolved by trainer.cli.resolve_config for `data`). A bar on a terminal; otherwise
    (logs, CI) one line per log point."""
    dist = dist or Distributed()  # a world of one unless torchrun started this process
    run = setup(cfg, data, dist, checkpoint)
    if checkpoint is not None:
        with dist.all_or_none():
            restore(run, checkpoint, Path(cfg.resume))
        run.files.rewrite_log(run.state.history)
    started = run.started = time.perf_counter()
    run.first_epoch, run.wall_before = run.state.epoch + 1, run.state.wall_s
    if dist.is_main:
        artifacts.save_run_info(run)
        run.tracking = Tracking(run.out, cfg, run.state.global_step)
        console.say(console.start_line(run))
    with StopOnSignal(dist) as stop:
        try:
            loop(run, progress and dist.is_main, stop)  # rank 0 speaks for the run
        finally:
            run.tracking.close()
            run.step = None  # it holds the DDP wrappers, which hold the process group Distributed.stop() frees
    if dist.is_main:
        artifacts.save_final(run)
    dist.barrier()  # the ranks leave together: none tears gloo down while rank 0 still writes
    run.wall_seconds = time.perf_counter() - started
    return run


def loop(run: Run, progress: bool, stop: StopOnSignal) -> None:
    """Epoch after epoch until --epochs; a stop request saves last.pt, out of memory names the option to lower."""
    cfg, s = run.cfg, run.state
    metrics, health = RunningMetrics(run.device, run.step.metric_names), Health(run.step.loss)
    try:
        while s.epoch < cfg.epochs:
            epoch = s.epoch + 1
            train_epoch(run, epoch, metrics, health, progress, stop)
            s.epoch, s.step_in_epoch = epoch, 0
            end_of_epoch(run, epoch)
    except Interrupted:
        if run.ema is not None:
            run.ema.recalibrate()
        s.wall_s = run.wall()
        path = run.files.save_last(training_checkpoint(run))
        why = signal.Signals(stop.signum).name if stop.signum else "stopped on another rank"
        raise Interrupted(f"{why}: saved {path} (epoch {s.epoch + 1}, step {s.step_in_epoch} of "
                          f"{run.batches.steps_per_epoch}); continue with --resume --out {run.out}") from None
    except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(e):
            raise
        size = f"{cfg.image_size}x{cfg.image_size}"
        raise UserError(f"out of memory on {run.device} at --batch-size {cfg.batch_size} ({size} images): "
                        f"lower --batch-size; {run.files.last_good(s.epoch)}") from None


def train_epoch(run: Run, epoch: int, metrics: RunningMetrics, health: Health, progress: bool,
                stop: StopOnSignal) -> None:
    cfg, s, steps = run.cfg, run.state, run.batches.steps_per_epoch
    bar = console.Progress(epoch, cfg.epochs, steps, s.step_in_epoch, progress, run.step.loss.shown)
    tick, images_since = time.perf_counter(), 0
    try:
        for real, labels in run.batches.epoch(epoch, s.step_in_epoch):
            if cfg.decay_epochs:
                set_learning_rates(cfg, run.opt_g, run.opt_d, s.global_step, steps)
            result = run.step(real, labels, s.global_step)  # (1) update D, (2) update G every --n-critic steps
            if result.g_stepped and run.ema is not None:
                run.ema.update(run.generator, s.global_step)  # (3) move the average towards the new G
            metrics.add(*result.metrics)
            s.step_in_epoch += 1
            s.global_step += 1
            images_since += cfg.batch_size * run.dist.world_size  # the whole run's images, every rank's
            bar.step()
            if s.global_step % cfg.log_every == 0 or s.step_in_epoch == steps:
                now = time.perf_counter()
                record = log_point(run, metrics, health, real, labels, result.fake, images_since / (now - tick))
                tick, images_since = now, 0
                bar.log_point(record, s.step_in_epoch)
            if cfg.sample_every_steps and s.global_step % cfg.sample_every_steps == 0 and run.dist.is_main:
                sample_within_epoch(run)
            if stop.requested():  # every rank stops at the same step
                raise Interrupted
    finally:
        bar.close()


def sample_within_epoch(run: Run) -> None:
    """--sample-every-steps: the G users get, drawn on the epochs' fixed noise. The average gets BatchNorm statistics
    of its own first, as at each epoch's end (deterministic: training and resume are unchanged)."""
    if run.ema is not None:
        run.ema.recalibrate()
    path = run.out / "samples" / f"step_{run.state.global_step:07d}.png"
    run.tracking.image("samples", artifacts.save_sample_grid(run.sampler, path), run.state.global_step)


def log_point(run: Run, metrics: RunningMetrics, health: Health, real, labels, fake, images_per_s: float) -> dict:
    """The metrics since the last log point, read from the device; a non-finite loss stops the run."""
    s, model_cfg = run.state, run.generator.cfg
    cond = labels if model_cfg.conditional else None
    spread = within_class_spread(fake, cond, model_cfg.num_classes)
    diversity = spread / within_class_spread(real, cond, model_cfg.num_classes).clamp(min=1e-8)
    values, nonfinite = metrics.read(run.dist, pixel_diversity=diversity)  # averaged over the ranks' batches too
    if nonfinite:
        # Once a loss is non-finite the weights are poisoned, so every later step is too.
        bad_step = s.global_step - nonfinite + 1
        raise NonFiniteLoss(f"non-finite loss at epoch {s.epoch + 1}, step {bad_step}; training stopped "
                            f"(try a lower learning rate); {run.files.last_good(s.epoch)}")
    record = {"epoch": s.epoch + 1, "step": s.global_step, **values, "images_per_s": images_per_s}
    record["health"], record["health_reason"] = health.update(record)
    log(run, record)
    return record


def log(run: Run, record: dict) -> None:
    """Keep a record in the history (checkpointed), metrics.jsonl and the trackers."""
    run.state.history.append(record)
    run.files.log(record)
    if run.dist.is_main:
        run.tracking.log(record)


def end_of_epoch(run: Run, epoch: int) -> None:
    """Recalibrate the average, score it (every --eval-every epochs), save last.pt; rank 0 writes the rest."""
    cfg, s = run.cfg, run.state
    scores, improved = None, False
    if run.ema is not None:
        run.ema.recalibrate()
    if run.scoring and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
        # Scored once, on rank 0; every rank gets the scores, so all agree on the best epoch.
        scores = run.dist.from_main(evaluate(run) if run.dist.is_main else None)
        s.wall_s = scores["wall_s"]
        improved = select(s, scores, epoch, cfg.quality_fid)
        log(run, {"epoch": epoch, "step": s.global_step, **scores})
    s.wall_s = run.wall()
    run.files.save_last(training_checkpoint(run))
    if run.dist.is_main:  # the files and the epoch's line are rank 0's
        epoch_outputs(run, epoch, scores, improved)


def evaluate(run: Run) -> dict:
    scores = score_epoch(run.evaluator, run.sampler)
    scores["wall_s"] = run.wall()
    return scores


def epoch_outputs(run: Run, epoch: int, scores: dict | None, improved: bool) -> None:
    """Checkpoint copies (periodic, best), the epoch's sample grid, the GIF, the loss curve and the epoch's line."""
    cfg, s, out = run.cfg, run.state, run.out
    if epoch % cfg.save_every == 0 or epoch == cfg.epochs:
        run.files.copy_last(f"epoch_{epoch:03d}.pt")
    if improved:
        run.files.copy_last("best.pt")
    if epoch % cfg.sample_every == 0 or epoch == cfg.epochs:
        grid = artifacts.save_sample_grid(run.sampler, out / "samples" / f"epoch_{epoch:03d}.png")
        run.tracking.image("samples", grid, s.global_step)
        artifacts.save_progress_gif(out / "samples", out / "progress.gif")
        artifacts.save_progress_collage(out / "samples", out / "training_progress.png")
    shown = run.step.loss.shown
    artifacts.save_loss_curve(s.history, out / "loss_curve.png", shown)
    last = [h for h in s.history if "loss_d" in h][-1]
    console.epoch_summary(epoch, cfg.epochs, last, scores, s, shown)


# ---- setting a run up ----------------------------------------------------------------------------


def setup(cfg: TrainConfig, data: Dataset, dist: Distributed, checkpoint: dict | None = None) -> Run:
    """Everything that can be refused is checked before any file is touched or any model built; under
    torchrun a refusal on any rank stops every rank, and is printed once. A resumed run's models take the
    shape its checkpoint holds where no option sets it (the classifier's width)."""
    model_cfg = cfg.model_config(data)
    if checkpoint is not None:
        saved = ModelConfig.from_dict(checkpoint["discriminator"]["config"])
        model_cfg = replace(model_cfg, classifier_width=saved.classifier_width)
    with dist.all_or_none():
        device = resolve_device(dist.device_name(cfg.device))
        precision = resolve_precision(cfg.precision, device)
        check_model_fits(model_cfg, device, classifier=cfg.aux_weight > 0)
        if cfg.wandb:
            Tracking.check_wandb()
        if dist.is_main:
            for note in data.notes:
                print(f"note: {note}", file=sys.stderr)
            if data.labels is None and not cfg.unconditional:
                print("note: the data has no classes (a flat folder): training an unconditional model",
                      file=sys.stderr)
            prepare_out(Path(cfg.out))
    use_fast_kernels(device)

    torch.manual_seed(cfg.seed)
    generator, discriminator = build_models(model_cfg, classifier=cfg.aux_weight > 0)
    with moving_to(device, "the models"):
        for model in (generator, discriminator):
            model.to(device, memory_format=torch.channels_last)
    # ...except G's first layer, which runs as a matmul: a channels_last weight would be copied
    # back to row-major three times a step (docs/performance.md).
    first = generator.parts.first
    first.weight.data = first.weight.data.contiguous()
    ema = EMA(generator, cfg.ema, cfg.seed) if cfg.ema else None
    # fused Adam: one kernel per parameter group instead of a dozen per tensor
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=betas, fused=True)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=betas, fused=True)
    noise = torch.Generator(device).manual_seed(cfg.seed + dist.rank)

    with moving_to(device, f"the {len(data.images):,} training images"):
        x = torch.from_numpy(data.images.copy()).to(device)  # uint8, converted per batch
        y = torch.from_numpy(data.labels if data.labels is not None else np.zeros(len(x), np.int64)).to(device)
    batches = InMemoryBatches(x, y, cfg.batch_size, cfg.seed, dist)

    # Under torchrun rank 0 alone scores (its OUT/scorer), and tells the others whether it does.
    evaluator = None
    with dist.all_or_none():
        if cfg.eval_every and dist.is_main:
            evaluator = evaluator_for_run(cfg, model_cfg, data, Path(cfg.out))
    scoring = dist.from_main(evaluator is not None)

    forwards = training_forwards(generator, discriminator, dist, device, cfg.compile)
    step = GanStep(cfg, generator, discriminator, opt_g, opt_d, noise, precision, forwards)
    return Run(cfg, dist, device, precision, generator, discriminator, ema, opt_g, opt_d, noise, batches, step,
               evaluator, scoring, RunFiles(Path(cfg.out), writes=dist.is_main))


def training_forwards(generator: Generator, discriminator: Discriminator, dist: Distributed, device: torch.device,
                      compile: bool) -> tuple:
    """G, D, D frozen and D for the penalties, as the step calls them: under torchrun wrapped in
    DistributedDataParallel (gradients averaged over the ranks), with --compile compiled. G's step runs D
    frozen through D itself: DDP would wait for D gradients that step never makes. The penalties (R1, the
    gradient penalty) differentiate D's gradient, a double backward torch.compile cannot take: never compiled."""
    g, d = dist.wrap(generator, device), dist.wrap(discriminator, device)
    compiled = torch.compile if compile else (lambda model: model)
    g_forward, d_forward = compiled(g), compiled(d)
    d_frozen = d_forward if d is discriminator else compiled(discriminator)
    return g_forward, d_forward, d_frozen, d


def prepare_out(out: Path) -> None:
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ".write_test") as tmp:
            tmp.write_text("ok")
        (out / ".write_test").unlink()
    except OSError as e:
        raise UserError(f"--out {out}: not writable ({e.strerror or e})") from None
    # A run killed with SIGKILL mid-write leaves its temporary file; the next run in this --out sweeps them.
    for folder in (out, out / "checkpoints", out / "samples"):
        remove_stale_temporaries(folder)


class StopOnSignal:
    """Ctrl-C and SIGTERM ask the loop to stop after its current step (it saves last.pt and exits 130)."""

    def __init__(self, dist: Distributed):
        self.dist, self.signum = dist, None

    def __enter__(self) -> StopOnSignal:
        self.previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, _frame) -> None:
        # A second Ctrl-C: the user means it. Not under torchrun, where one Ctrl-C arrives twice (from the
        # terminal and from torchrun) and torchrun itself kills ranks still running 30 s later.
        if self.signum is not None and not self.dist.launched:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self) -> bool:
        return self.dist.any(self.signum is not None)
