"""Training throughput: the trainer's step against the pytorch/examples `dcgan` loop, on the same machine, in one
process, so only the ratios mean something.

Reference (as pytorch/examples writes it): torchvision MNIST with PIL images, ToTensor + Normalize per
image, DataLoader(num_workers=2, shuffle=True), fp32, a `.item()` per step, the DCGAN paper's G and D.
Project rows: the trainer's own run set-up and public step (trainer.train.setup, trainer.step.GanStep), its
in-memory batches and its precision for this device, metrics read every --log-every steps:
- "default recipe": what `python -m trainer` trains (one more D block, R1, the auxiliary classifier, the
  weight average);
- "paper G/D": the reference's model and losses (no D block, no R1, no classifier, no average), so the
  ratio is the data path, the precision and the step's implementation alone.

    python benchmarks/train_speed.py           # 200 timed steps each
    python benchmarks/train_speed.py --quick   # a few steps each, seconds: a smoke test (CI), not a measurement
    python benchmarks/train_speed.py --precision fp32   # what bf16 autocast gives, by leaving it out
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import TrainConfig, load_training_data  # noqa: E402
from trainer.data import BUNDLED_MNIST  # noqa: E402
from trainer.distributed import Distributed  # noqa: E402
from trainer.model import ModelConfig, build_models  # noqa: E402
from trainer.monitor import RunningMetrics  # noqa: E402
from trainer.train import setup  # noqa: E402

# the reference's G, D and losses: pytorch/examples' ngf = ndf = 64, whatever today's default widths are
PAPER_MODEL = {"d_blocks": 0, "g_width": 64, "d_width": 64}
PAPER = {**PAPER_MODEL, "r1": 0.0, "aux_weight": 0.0, "ema": 0.0}


def reference_images_per_s(steps: int, warmup: int, batch_size: int, device: torch.device, workers: int = 2) -> float:
    import torchvision.transforms as T
    from torchvision.datasets import MNIST

    with tempfile.TemporaryDirectory() as root:
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in BUNDLED_MNIST.glob("*.gz"):  # torchvision checks all four files
            (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
        dataset = MNIST(root, train=True, download=False,
                        transform=T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))]))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                             drop_last=True)
        torch.manual_seed(0)
        net_g, net_d = build_models(ModelConfig(**PAPER_MODEL))  # the DCGAN paper's G and D
        net_g, net_d = net_g.to(device), net_d.to(device)
        criterion = nn.BCEWithLogitsLoss()
        opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        start, done = None, 0
        for i, (real, labels) in enumerate(loader):
            if i == warmup:
                start = time.perf_counter()
            if i == warmup + steps:
                break
            real, labels = real.to(device), labels.to(device)
            b = real.size(0)
            net_d.zero_grad()
            err_real = criterion(net_d(real, labels), torch.full((b,), 1.0, device=device))
            err_real.backward()
            fake = net_g(torch.randn(b, 100, device=device), labels)
            err_fake = criterion(net_d(fake.detach(), labels), torch.full((b,), 0.0, device=device))
            err_fake.backward()
            opt_d.step()
            net_g.zero_grad()
            err_g = criterion(net_d(fake, labels), torch.full((b,), 1.0, device=device))
            err_g.backward()
            opt_g.step()
            _ = (err_real + err_fake).item(), err_g.item()  # the example prints these every step
            done += b if i >= warmup else 0
        return done / (time.perf_counter() - start)


def project_images_per_s(steps: int, warmup: int, batch_size: int, precision: str, **recipe) -> tuple[float, str]:
    """The trainer's own run set-up and public step (trainer.train.setup, GanStep), EMA update included."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(batch_size=batch_size, out=out, precision=precision, eval_every=0, **recipe)
        data = load_training_data(cfg)
        cfg = cfg.for_data(data)
        run = setup(cfg, data, Distributed())
        return timed_steps(run, steps, warmup), f"{run.precision}, channels_last, compile={cfg.compile}"


def timed_steps(run, steps: int, warmup: int) -> float:
    """images/s of the loop's per-batch work on a set-up run: the step, the average's update, the metrics read
    every --log-every steps (benchmarks/step_costs.py uses it too)."""
    metrics = RunningMetrics(run.device, run.step.metric_names)
    batches = run.batches.epoch(1)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        real, labels = next(batches)
        result = run.step(real, labels, i)
        if result.g_stepped and run.ema is not None:
            run.ema.update(run.generator, i)
        metrics.add(*result.metrics)
        if (i + 1) % run.cfg.log_every == 0:
            metrics.read()
    metrics.read()  # the final sync: all queued work is done
    return steps * run.cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps each at batch 32: a smoke test")
    parser.add_argument("--steps", type=int, help="timed steps each (default 200, or 3 with --quick)")
    parser.add_argument("--batch-size", type=int, help="images per step (default 128, or 32 with --quick)")
    parser.add_argument("--precision", default="auto", help="the project's precision (auto = its shipped default)")
    args = parser.parse_args()
    warmup = 1 if args.quick else 5
    steps = args.steps or (3 if args.quick else 200)
    batch_size = args.batch_size or (32 if args.quick else 128)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {batch_size}, {steps} timed steps after {warmup} warm-up steps")
    reference = reference_images_per_s(steps, warmup, batch_size, device, workers=0 if args.quick else 2)
    print(f"reference (pytorch/examples loop, paper G/D, fp32, DataLoader+PIL): {reference:8.1f} images/s")
    for name, recipe in (("default recipe", {}), ("paper G/D", PAPER)):
        project, setting = project_images_per_s(steps, warmup, batch_size, args.precision, **recipe)
        print(f"project {name:<15} (trainer step, {setting}): {project:8.1f} images/s, "
              f"{project / reference:.2f}x the reference")


if __name__ == "__main__":
    main()
