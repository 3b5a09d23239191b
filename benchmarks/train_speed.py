"""Training throughput: the trainer's step against the pytorch/examples `dcgan` loop, same G, D and batch.

Reference (as pytorch/examples writes it): torchvision MNIST with PIL images, ToTensor + Normalize per
image, DataLoader(num_workers=2, shuffle=True), fp32, a `.item()` per step.
Project: the trainer's own data (one in-memory tensor, batches by index) and step with its shipped
defaults for this device (bf16 autocast + channels_last where supported, metrics read every 50 steps).

    python benchmarks/train_speed.py           # 200 timed steps each
    python benchmarks/train_speed.py --quick   # 30 timed steps each, about a minute
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

from trainer.config import TrainConfig  # noqa: E402
from trainer.data import BUNDLED_MNIST  # noqa: E402
from trainer.model import (
    ModelConfig,  # noqa: E402
    build_models,  # noqa: E402
)
from trainer.monitor import RunningMetrics  # noqa: E402
from trainer.train import Trainer  # noqa: E402

WARMUP = 5


def reference_images_per_s(steps: int, batch_size: int, device: torch.device) -> float:
    import torchvision.transforms as T
    from torchvision.datasets import MNIST

    with tempfile.TemporaryDirectory() as root:
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in BUNDLED_MNIST.glob("*.gz"):  # torchvision checks all four files
            (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
        dataset = MNIST(root, train=True, download=False,
                        transform=T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))]))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2,
                                             drop_last=True)
        torch.manual_seed(0)
        net_g, net_d = build_models(ModelConfig())  # the project's default G and D
        net_g, net_d = net_g.to(device), net_d.to(device)
        criterion = nn.BCEWithLogitsLoss()
        opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        start, done = None, 0
        for i, (real, labels) in enumerate(loader):
            if i == WARMUP:
                start = time.perf_counter()
            if i == WARMUP + steps:
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
            done += b if i >= WARMUP else 0
        return done / (time.perf_counter() - start)


def project_images_per_s(steps: int, batch_size: int, precision: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(batch_size=batch_size, out=out, precision=precision, eval_every=0))
        targets = {
            "real": torch.ones(batch_size, device=trainer.device),
            "fake": torch.zeros(batch_size, device=trainer.device),
            "ones": torch.ones(batch_size, device=trainer.device),
        }
        metrics = RunningMetrics(trainer.device)
        batches = trainer.batches.epoch(1)
        for i in range(WARMUP + steps):
            if i == WARMUP:
                start = time.perf_counter()
            real, labels = next(batches)
            *values, _ = trainer.train_step(real, labels, targets)
            metrics.add(*values)
            if (i + 1) % 50 == 0:
                metrics.read()
        metrics.read()  # the final sync: all queued work is done
        elapsed = time.perf_counter() - start
        return steps * batch_size / elapsed, f"{trainer.precision}, channels_last, compile={trainer.use_compile}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 timed steps each (about a minute)")
    parser.add_argument("--steps", type=int, help="timed steps each (default 200, or 30 with --quick)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto", help="the project's precision (auto = its shipped default)")
    args = parser.parse_args()
    steps = args.steps or (30 if args.quick else 200)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, {steps} timed steps after {WARMUP} warm-up steps")
    reference = reference_images_per_s(steps, args.batch_size, device)
    print(f"reference (pytorch/examples loop, fp32, DataLoader+PIL): {reference:8.1f} images/s")
    project, setting = project_images_per_s(steps, args.batch_size, args.precision)
    print(f"project   (trainer step, {setting}): {project:8.1f} images/s")
    print(f"speedup {project / reference:.2f}x")


if __name__ == "__main__":
    main()
