"""Every CUDA path of mnist-gen in a few minutes on one GPU: one line per check, with its figure.

    python benchmarks/gpu_check.py            # from a clone; no network; about 5 minutes on one GPU

Each check runs the real commands (python -m trainer / exporter / infer, torchrun) on their own files in a
temporary folder, and prints `PASS`, `FAIL` or `SKIP`, the check's name and its figure or reason:
a CUDA training with resume, export with parity on onnxruntime's CUDA provider (and the difference TF32 makes),
`infer` and `bench` on CUDA for the fp32 and int8 models, `serve` answering on CUDA, a 1-process torchrun
with NCCL, `--compile` against eager, and one default epoch. What each figure means: docs/gpu.md.

Exit status: 0 when no check failed, 1 when one did, 77 when torch sees no usable CUDA device here (nothing
is run; 77 is the "skipped" status of automake and meson test harnesses).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EXIT_NO_CUDA = 77
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
DEVICE, PROVIDER = "cuda", "cuda"  # what every command is asked to run on
TRAIN = ["--device", DEVICE, "--no-tensorboard", "--sample-every", "1000"]
NCCL_PROBE = """
import os, time, torch, torch.distributed as dist
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl")
x = torch.ones(64 * 2**20 // 4, device="cuda")
dist.all_reduce(x); torch.cuda.synchronize()
start = time.perf_counter(); dist.all_reduce(x); torch.cuda.synchronize()
print(f"{(time.perf_counter() - start) * 1e3:.2f} {x[0].item():g}")
dist.destroy_process_group()
"""


class Failed(Exception):
    """A check's command failed: its one-line reason."""


class Skipped(Exception):
    """A check that cannot run on this machine: why."""


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """A real command from the repository root; a non-zero exit or a timeout fails the check with its last line."""
    try:
        result = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failed(f"timed out after {timeout:.0f} s: {' '.join(args[1:4])} ...") from None
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        raise Failed(f"exit {result.returncode}: {lines[-1][:200]}")
    return result


def python_m(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", module, *args], timeout)


def steady_rate(out: Path) -> float:
    """Training images/s of a run: the mean of its log points after the first (which holds the warm-up)."""
    rates = [json.loads(line)["images_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "images_per_s" in line]
    steady = rates[1:] or rates
    return sum(steady) / len(steady)


# ---- the checks: each returns its figure, or raises Failed / Skipped ---------------------------------


def check_device(work: Path) -> str:
    import torch

    from trainer.device import has_kernels

    index = torch.cuda.current_device()
    capability = torch.cuda.get_device_capability(index)
    archs = torch.cuda.get_arch_list()
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    figure = (f"{torch.cuda.get_device_name(index)}, capability {capability[0]}.{capability[1]}, torch "
              f"{torch.__version__} (CUDA {torch.version.cuda}, kernels {' '.join(archs)}), "
              f"native bf16 {'yes' if native_bf16 else 'no'}")
    if not has_kernels(capability, archs):
        raise Failed(f"{figure}: this torch has no kernels for this GPU")
    return figure


def check_train_resume(work: Path) -> str:
    """Train, resume, and compare with the same run made in one go: on CUDA, TF32 and cuDNN's autotuner make
    two runs differ in their last bits, so the figure is how far apart they end (0 on a CPU)."""
    import torch

    common = [*TRAIN, "--limit", "4096", "--eval-samples", "1000"]
    out, straight = work / "run", work / "straight"
    started = time.perf_counter()
    python_m("trainer", *common, "--out", str(out), "--epochs", "1")
    first = time.perf_counter() - started
    python_m("trainer", *common, "--out", str(out), "--epochs", "2", "--resume")
    python_m("trainer", *common, "--out", str(straight), "--epochs", "2")
    files = [torch.load(folder / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
             for folder in (out, straight)]
    apart = max((a - b).abs().max().item() for a, b in zip(
        files[0]["generator"]["state_dict"].values(), files[1]["generator"]["state_dict"].values(), strict=True)
        if a.is_floating_point())
    weights = torch.load(out / "generator.pth", weights_only=True)  # no map_location: as a CPU-only user opens it
    devices = {t.device.type for t in weights["state_dict"].values()}
    if devices != {"cpu"}:
        raise Failed(f"generator.pth holds tensors on {', '.join(sorted(devices))}; a CPU machine cannot open it")
    config = json.loads((out / "config.json").read_text())["resolved"]
    return (f"{steady_rate(out):,.0f} images/s on {config['device']} ({config['precision']}), 4,096 images; "
            f"epoch 1 took {first:.1f} s with start-up; resumed to epoch 2: G's weights {apart:.1e} from the run "
            f"made in one go; generator.pth holds CPU tensors")


def check_export(work: Path) -> str:
    pth, onnx_path = work / "run" / "generator.pth", work / "run" / "generator.onnx"
    if not pth.is_file():
        raise Skipped("no generator.pth: the training check failed")
    lines = python_m("exporter", str(pth), "--out", str(onnx_path)).stdout.splitlines()
    cuda = [line for line in lines if "on CUDAExecutionProvider" in line]
    if not cuda:
        raise Skipped("onnxruntime offers no CUDA provider here (pip install onnxruntime-gpu); CPU parity passed")
    if "not checked" in cuda[0]:
        raise Skipped(f"{cuda[0].split(': ', 1)[1]}; CPU parity passed")
    return f"{cuda[0].split(': ', 1)[1]}; with TF32 on, as users run it: {tf32_difference(pth, onnx_path):.2e}"


def tf32_difference(pth: Path, onnx_path: Path) -> float:
    """Max |onnxruntime CUDA with its default options (TF32 on) - torch fp32 on the CPU| at batch 257."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from exporter.export import sample_inputs
    from trainer.checkpoint import generator_from_file, load_file

    generator, _ = generator_from_file(load_file(pth), pth)
    inputs = sample_inputs(generator.cfg, 257, seed=257)
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    (images,) = session.run(["images"], inputs)
    with torch.no_grad():
        labels = torch.from_numpy(inputs["labels"]) if "labels" in inputs else None
        reference = generator(torch.from_numpy(inputs["z"]), labels).numpy()
    return float(np.abs(images - reference).max())


def check_infer(work: Path, model: Path, name: str) -> str:
    """`infer` writes a grid on CUDA; `bench` says where onnxruntime placed the model and how fast it runs."""
    if not model.is_file():
        raise Skipped(f"no {model.name}")
    try:
        python_m("infer", "infer", "--model", str(model), "--provider", PROVIDER, "--n", "64",
                 "--out", str(work / f"{name}.png"), timeout=120)
    except Failed as e:
        raise Skipped(f"mnist-gen cannot run on CUDA here ({e})") from None
    lines = python_m("infer", "bench", "--model", str(model), "--provider", PROVIDER, "--batch-sizes", "1,256",
                     "--seconds", "2", timeout=120).stdout.splitlines()
    rows = {int(line.split()[0]): line.split() for line in lines[1:] if line.split() and line.split()[0].isdigit()}
    placed = lines[0].rsplit(", ", 1)[-1].rstrip(")")
    return (f"{float(rows[256][2]):,.0f} images/s at batch 256, {float(rows[1][1]):.2f} ms at batch 1 "
            f"({model.name}, {placed})")


def check_serve(work: Path) -> str:
    """`serve` on CUDA answers /api/info and /api/generate; requests/s of one client asking for 16 digits."""
    import importlib.util

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise Skipped("fastapi/uvicorn not installed (pip install \".[serve]\")")
    model = work / "run" / "generator.onnx"
    args = [sys.executable, "-m", "infer", "serve", "--port", "0", "--provider", PROVIDER]
    args += ["--model", str(model)] if model.is_file() else []
    log = work / "serve.log"  # a file, not a pipe nobody reads: a full pipe would stall the server
    with open(log, "w") as stderr:
        server = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        ready = select.select([server.stdout], [], [], 60)[0]
        line = server.stdout.readline() if ready else ""  # "serving http://127.0.0.1:PORT/ (Ctrl-C to stop)"
        if not line.startswith("serving "):
            lines = log.read_text().strip().splitlines() or ["no output in 60 s"]
            raise Skipped(f"serve did not start on CUDA: {lines[-1][:200]}")
        url = line.split()[1]
        info = json.loads(urllib.request.urlopen(url + "api/info", timeout=30).read())
        if info["provider"] != "CUDAExecutionProvider":
            raise Failed(f"serve runs on {info['provider']}")
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 5:
            png = urllib.request.urlopen(url + f"api/generate?digit=3&n=16&seed={count}", timeout=30).read()
            if not png.startswith(b"\x89PNG"):
                raise Failed("/api/generate answered no PNG")
            count += 1
        return f"{count / (time.perf_counter() - started):.1f} requests/s, 16 digits each, 1 client, on CUDA"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def check_torchrun_nccl(work: Path) -> str:
    probe = work / "nccl_probe.py"
    probe.write_text(NCCL_PROBE)
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                  str(probe)], timeout=120)
    ms, value = result.stdout.split()[-2:]
    if float(value) != 1.0:
        raise Failed(f"all_reduce over one process changed the tensor (got {value})")
    out = work / "torchrun"
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "trainer",
         *TRAIN, "--limit", "2048", "--epochs", "1", "--eval-every", "0", "--out", str(out)], timeout=300)
    return f"NCCL all_reduce of 64 MiB in {ms} ms; python -m trainer under torchrun: {steady_rate(out):,.0f} images/s"


def check_compile(work: Path) -> str:
    rates = {}
    for name, flag in (("eager", "--no-compile"), ("compiled", "--compile")):
        out = work / name
        started = time.perf_counter()
        python_m("trainer", *TRAIN, flag, "--limit", "16384", "--epochs", "1", "--eval-every", "0",
                 "--log-every", "32", "--out", str(out))
        rates[name] = (steady_rate(out), time.perf_counter() - started)
    (eager, eager_s), (compiled, compiled_s) = rates["eager"], rates["compiled"]
    return (f"--compile {compiled:,.0f} images/s against eager {eager:,.0f} ({compiled / eager:.2f}x), "
            f"16,384 images with the default loss (R1 on); whole run {compiled_s:.0f} s against {eager_s:.0f} s")


def check_default_epoch(work: Path) -> str:
    out = work / "epoch"
    started = time.perf_counter()
    python_m("trainer", "--device", DEVICE, "--epochs", "1", "--no-tensorboard", "--out", str(out), timeout=300)
    wall = time.perf_counter() - started
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    fid = [h["fid_train"] for h in history if "fid_train" in h]
    return (f"{wall:.1f} s for one default epoch (60,000 images, FID on {len(fid)} evaluation), "
            f"{steady_rate(out):,.0f} images/s; FID vs training images {fid[-1]:.2f}")


# ---- the run ------------------------------------------------------------------------------------


def no_cuda_reason() -> str:
    """Why nothing can be checked here, or "" when torch sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install -e \".[train]\")"
    if not torch.cuda.is_available():
        return f"no CUDA device: torch {torch.__version__} sees none (torch.cuda.is_available() is False)"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="for CI's loop over every benchmark: the same checks, already minutes-scale on a GPU; "
                             "without CUDA the script exits 77 at once either way")
    parser.parse_args()
    reason = no_cuda_reason()
    if reason:
        print(f"gpu_check: {reason}; nothing checked (exit {EXIT_NO_CUDA}). Run it on a machine with an "
              "NVIDIA GPU.", file=sys.stderr)
        return EXIT_NO_CUDA
    checks = [
        ("device", check_device),
        ("train + resume", check_train_resume),
        ("export, CUDA parity", check_export),
        ("infer fp32", lambda w: check_infer(w, w / "run" / "generator.onnx", "fp32")),
        ("infer int8", lambda w: check_infer(w, REPO / "infer" / "assets" / "generator.int8.onnx", "int8")),
        ("serve", check_serve),
        ("torchrun NCCL", check_torchrun_nccl),
        ("compile vs eager", check_compile),
        ("default epoch", check_default_epoch),
    ]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="mnist-gen-gpu-check-") as tmp:
        for name, check in checks:
            started = time.perf_counter()
            try:
                status, text = "PASS", check(Path(tmp))
            except Skipped as e:
                status, text = "SKIP", str(e)
            except Failed as e:
                status, text, failed = "FAIL", str(e), failed + 1
            except Exception as e:  # noqa: BLE001 - a surprise in one check must not hide the others' figures
                status, text, failed = "FAIL", f"{type(e).__name__}: {str(e)[:200]}", failed + 1
            print(f"{status}  {name:<20} {text}  [{time.perf_counter() - started:.0f} s]", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
