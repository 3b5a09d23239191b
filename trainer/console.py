"""What the user reads while a run trains: the first line, a progress bar (or plain lines), each epoch's summary.

Rank 0 alone speaks; everything goes to stderr, so stdout stays free for pipes.
"""

from __future__ import annotations

import sys

from .monitor import AUX_ACCURACY, RED


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def start_line(run) -> str:
    """What the run will do, and on what: the precision decides the speed (docs/performance.md)."""
    cfg, batches, precision = run.cfg, run.batches, run.precision
    if cfg.precision == "auto" and precision == "fp32" and run.device.type == "cpu":
        precision += " (this CPU has no native bf16)"
    processes = f" x {run.dist.world_size} processes" if run.dist.active else ""
    first = run.state.epoch + 1
    epochs = f"epoch {first}" if first == cfg.epochs else f"epochs {first}-{cfg.epochs}"
    return (f"training on {run.device}, {precision}: {len(batches.images):,} {cfg.dataset} images, "
            f"{batches.steps_per_epoch} steps of {cfg.batch_size}{processes} per epoch, "
            f"{epochs}, loss {cfg.loss}; writing {run.out}")


def postfix(m: dict, color: bool, shown: str = "probability") -> str:
    """One log point's figures: losses, D's outputs (probabilities, or a critic's scores), speed, health."""
    health = m["health"]
    if color:
        code = {"green": "32", "yellow": "33", "red": "31"}[health]
        health = f"\033[{code}m{health}\033[0m"
    d = "D" if shown == "probability" else "score"  # a critic's raw score is no probability: say so
    aux = f"read-as-asked={m[AUX_ACCURACY]:.3f} " if AUX_ACCURACY in m else ""
    text = (f"loss_d={m['loss_d']:.3f} loss_g={m['loss_g']:.3f} {d}(x)={m['d_x']:.3f} {d}(G(z))={m['d_gz']:.3f} "
            f"{aux}{m['images_per_s']:.0f} img/s health={health}")
    return text if m["health"] == "green" else f"{text} ({m['health_reason']})"


class Progress:
    """A bar per epoch on a terminal; elsewhere (logs, CI) one plain line per log point; nothing when off."""

    def __init__(self, epoch: int, epochs: int, steps: int, done: int, enabled: bool, shown: str):
        from tqdm import tqdm

        self.tty, self.enabled, self.shown = sys.stderr.isatty(), enabled, shown
        self.epoch, self.steps = epoch, steps
        self.bar = tqdm(total=steps, initial=done, unit="step", desc=f"epoch {epoch}/{epochs}",
                        disable=not (enabled and self.tty), dynamic_ncols=True, file=sys.stderr)

    def step(self) -> None:
        self.bar.update(1)

    def log_point(self, record: dict, step_in_epoch: int) -> None:
        self.bar.set_postfix_str(postfix(record, self.tty, self.shown))
        if self.enabled and not self.tty:
            say(f"epoch {self.epoch} step {step_in_epoch}/{self.steps}  {postfix(record, False, self.shown)}")

    def close(self) -> None:
        self.bar.close()


def epoch_summary(epoch: int, epochs: int, last: dict, scores: dict | None, state, shown: str) -> None:
    """The epoch's line (its last log point, its FID) and a warning when training looks unhealthy."""
    summary = f"epoch {epoch}/{epochs} done  {postfix(last, sys.stderr.isatty(), shown)}"
    if scores is not None:
        summary += f"  FID(train)={scores['fid_train']:.2f} (best {state.best_fid:.2f} at epoch {state.best_epoch})"
        summary += f" diversity={scores['diversity']:.2f}"
    say(summary)
    if last["health"] == RED:
        print(f"warning: training looks unhealthy: {last['health_reason']}", file=sys.stderr)
    if scores is not None and scores["diversity"] < 0.3:
        print(f"warning: training looks unhealthy (red): within-class diversity {scores['diversity']:.2f} of real; "
              "G is drawing near-identical images per class", file=sys.stderr)
