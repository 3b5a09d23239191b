"""mnist-gen trainer: a fast, observable, crash-safe DCGAN on MNIST (`python -m trainer`).

Where each job lives:
  cli.py, config.py   options -> one frozen TrainConfig (defaults, --help and resume locks declared per field)
  train.py            the loop, read top to bottom: set up, then per batch (1) D, (2) G, (3) the average
  step.py             the D and G updates (losses, gradient penalty, R1, auxiliary classifier, n_critic)
  losses.py           one small function pair per --loss
  ema.py              the weight average of G (update, BatchNorm recalibration, state)
  checkpoint.py       last/best/periodic checkpoints, exact resume, metrics.jsonl, self-describing files
  evaluate.py         FID against the training images, best-epoch choice, time-to-quality
  console.py          the first line, the progress bar, each epoch's summary
  monitor.py          running metrics on the device, the health light
  device.py           device, precision, "do the models fit", out-of-memory
  model.py, data/     G and D; one reader per data source
  distributed.py, tracking.py, artifacts.py   torchrun ranks; TensorBoard/W&B; pictures and final files
  report.py, classifier.py                    python -m trainer.report / trainer.classifier
"""

from infer import __version__

__all__ = ["__version__"]
