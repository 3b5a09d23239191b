"""Inference: `mnist-gen` (onnxruntime) against the smallest honest torch script, side by side.

1. Cold start: wall time and peak RSS of a whole process that writes a 64-digit grid PNG
   (torch script, mnist-gen on the fp32 model, mnist-gen on the int8 model), all on the CPU, also on a
   machine with a GPU (`--provider cpu`): CUDA figures come from benchmarks/gpu_check.py.
2. Throughput: onnxruntime against torch eager on the same model at batch 1, 64 and 256, with what
   each onnxruntime setting tried gave (threads, IO binding, fp16, int8, the exporter's sub-pixel rewrite).

    python benchmarks/infer_speed.py [--model artifacts/generator.pth] [--quick]

Without --model it uses a freshly initialised conditional 28x28 generator (same compute as a trained one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 3  # throughput: median of this many interleaved rounds
sys.path.insert(0, str(REPO))

TORCH_SCRIPT = """
import sys, torch, torchvision
from trainer.checkpoint import generator_from_file
g, _ = generator_from_file(torch.load(sys.argv[1], weights_only=True), sys.argv[1])
torch.manual_seed(0)
with torch.no_grad():
    images = g(torch.randn(64, g.cfg.latent_dim), torch.arange(64) % 10)
torchvision.utils.save_image(images, sys.argv[2], nrow=10, normalize=True, value_range=(-1, 1))
"""


# A child forked from this (torch-laden) process would inherit its peak RSS, so a small launcher
# starts each command and reports the command's own wall time and peak RSS.
LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one whole process."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *command], cwd=REPO, capture_output=True, text=True)
    wall, rss, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"failed: {' '.join(command)}\n{out.stderr}")
    return float(wall), float(rss)


def cold_start(pth: Path, onnx_path: Path, int8_path: Path, runs: int, tmp: Path) -> None:
    script = tmp / "torch_grid.py"
    script.write_text(TORCH_SCRIPT)
    cli = str(Path(sys.executable).with_name("mnist-gen"))
    cpu = ["--provider", "cpu"]  # the torch script runs on the CPU: compare like with like
    commands = {
        "mnist-gen": [cli, "infer", "--model", str(onnx_path), *cpu, "--n", "64", "--seed", "0",
                      "--out", str(tmp / "a.png")],
        "int8": [cli, "infer", "--model", str(int8_path), *cpu, "--n", "64", "--seed", "0",
                 "--out", str(tmp / "c.png")],
        "torch": [sys.executable, str(script), str(pth), str(tmp / "b.png")],
    }
    results = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so drift on the machine hits both alike
        for name, command in commands.items():
            results[name].append(measure(command))
    wall = {n: statistics.median(r[0] for r in rs) for n, rs in results.items()}
    rss = {n: statistics.median(r[1] for r in rs) for n, rs in results.items()}
    print(f"cold start, 64-digit grid, median of {runs}:")
    for name in commands:
        print(f"  {name:<10} {wall[name]:6.2f} s  {rss[name]:7.0f} MB peak RSS")
    print(f"  mnist-gen is {wall['torch'] / wall['mnist-gen']:.1f}x faster and uses "
          f"{rss['mnist-gen'] / rss['torch']:.2f} of the memory ('int8': mnist-gen on the int8 model)")


def throughput(pth: Path, onnx_path: Path, int8_path: Path, seconds: float, tmp: Path) -> None:
    """images/s of torch eager and of onnxruntime in each setting tried, interleaved per batch size."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from exporter.export import export, to_onnx_proto
    from infer.generator import session_options
    from trainer.checkpoint import generator_from_file

    generator, _ = generator_from_file(torch.load(pth, weights_only=True), pth)
    generator.eval()
    fp16_path = export(pth, tmp / "generator_fp16.onnx", fp16=True).path
    plain = to_onnx_proto(generator, 18, fp16=False, sub_pixel=False).SerializeToString()
    cpu = ["CPUExecutionProvider"]
    sessions = {
        "onnxruntime, shipped (sub-pixel graph, default threads)": ort.InferenceSession(
            str(onnx_path), session_options(None), providers=cpu),
        "  same, 1 intra-op thread": ort.InferenceSession(str(onnx_path), session_options(1), providers=cpu),
        "  same, IO binding into a preallocated output": None,  # the shipped session, bound
        "  fp16 model": ort.InferenceSession(str(fp16_path), session_options(None), providers=cpu),
        "  int8 model (python -m exporter --int8)": ort.InferenceSession(
            str(int8_path), session_options(None), providers=cpu),
        "  plain export (ConvTranspose as trained)": ort.InferenceSession(plain, session_options(None), providers=cpu),
    }
    shipped = sessions["onnxruntime, shipped (sub-pixel graph, default threads)"]

    def rate(fn, batch, seconds):
        fn()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or count < 3:
            fn()
            count += 1
        return batch * count / (time.perf_counter() - start)

    batches = (1, 64, 256)
    rows = {"torch eager, fp32": [], **{name: [] for name in sessions}}
    for batch in batches:
        z = np.random.default_rng(0).standard_normal((batch, generator.cfg.latent_dim), dtype=np.float32)
        labels = np.arange(batch, dtype=np.int64) % max(generator.cfg.num_classes, 1)
        feeds = {"z": z, "labels": labels} if generator.cfg.conditional else {"z": z}
        tensors = [torch.from_numpy(v) for v in feeds.values()]

        def torch_run(tensors=tensors):
            with torch.inference_mode():
                generator(*tensors)

        binding = shipped.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        size = generator.cfg.image_size
        output = ort.OrtValue.ortvalue_from_shape_and_type((batch, 1, size, size), np.float32, "cpu")
        binding.bind_ortvalue_output("images", output)
        runs = {"torch eager, fp32": torch_run}
        for name, session in sessions.items():
            if session is None:
                runs[name] = lambda binding=binding: shipped.run_with_iobinding(binding)
            else:
                runs[name] = lambda session=session, feeds=feeds: session.run(None, feeds)
        # Rounds, each running every setting in turn: drift on a shared machine then hits all of them alike.
        rates = {name: [] for name in runs}
        for _ in range(ROUNDS):
            for name, fn in runs.items():
                rates[name].append(rate(fn, batch, seconds / ROUNDS))
        for name in runs:
            rows[name].append(statistics.median(rates[name]))

    print(f"throughput, images/s, median of {ROUNDS} interleaved rounds (torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {torch.get_num_threads()} torch threads):")
    print(f"  {'':<58}" + "".join(f" {'batch ' + str(b):>10}" for b in batches))
    for name, values in rows.items():
        print(f"  {name:<58}" + "".join(f" {v:>10.0f}" for v in values))
    ratios = [o / t for o, t in zip(rows[next(iter(sessions))], rows["torch eager, fp32"], strict=True)]
    print(f"  {'shipped onnxruntime / torch eager':<58}" + "".join(f" {r:>9.2f}x" for r in ratios))
    int8 = [i / o for i, o in zip(rows["  int8 model (python -m exporter --int8)"], rows[next(iter(sessions))],
                                  strict=True)]
    print(f"  {'int8 / shipped fp32 onnxruntime':<58}" + "".join(f" {r:>9.2f}x" for r in int8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a generator.pth (default: a fresh conditional 28x28 G)")
    parser.add_argument("--quick", action="store_true",
                        help="1 cold start and 0.1 s per throughput point, int8 calibrated on 64 latents: "
                             "checks the script runs (its figures are not the study's)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per throughput point (all rounds)")
    args = parser.parse_args()
    from exporter.export import export
    from exporter.quantize import CALIBRATION_SIZE, quantize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pth = args.model
        if pth is None:
            import torch

            from trainer.checkpoint import generator_file, save_atomic
            from trainer.model import ModelConfig, build_models

            torch.manual_seed(0)
            pth = tmp / "generator.pth"
            save_atomic(generator_file(build_models(ModelConfig())[0], 0), pth)
        onnx_path = export(pth, tmp / "generator.onnx").path
        # Speed only: the int8 model's quality is the exporter's gate's job (docs/int8.md), and a fresh G has none.
        calibration = 64 if args.quick else CALIBRATION_SIZE
        int8_path = quantize(onnx_path, tmp / "generator.int8.onnx", calibration=calibration, check=False).path
        print(f"model: {pth} -> {onnx_path.name}, {int8_path.name}; machine: {os.cpu_count()} CPUs")
        cold_start(pth, onnx_path, int8_path, 1 if args.quick else 7, tmp)
        throughput(pth, onnx_path, int8_path, 0.1 if args.quick else args.seconds, tmp)


if __name__ == "__main__":
    main()
