"""Where the run computes: the device, its precision, whether the models fit, and out-of-memory errors."""

from __future__ import annotations

import contextlib
import sys

import torch
from torch.overrides import TorchFunctionMode

from infer.errors import UserError

from .model import Discriminator, Generator, ModelConfig

BF16_CAPABILITY = (8, 0)  # Ampere on: bf16 tensor cores; cuDNN runs no bf16 convolutions on older GPUs


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        why = unsupported_gpu(torch.device("cuda"))
        if why:
            print(f"note: training on the CPU: {why}", file=sys.stderr)
            return torch.device("cpu")
        return torch.device("cuda")
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
        why = unsupported_gpu(device)
        if why:
            raise UserError(f"--device {name}: {why}; or train on the CPU with --device cpu")
    return device


def has_kernels(capability: tuple[int, int], archs: list[str]) -> bool:
    """Whether a torch built for `archs` (torch.cuda.get_arch_list()) has kernels for a GPU of `capability`.

    sm_XY machine code runs on capability X.Y and on newer minors of the same major (sm_86 on 8.9);
    compute_XY (PTX) is compiled by the driver for any capability from X.Y on.
    """
    for arch in archs:
        kind, _, digits = arch.partition("_")
        digits = "".join(c for c in digits if c.isdigit())  # sm_90a -> 90
        built = (int(digits[:-1]), int(digits[-1]))
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= capability:
            return True
    return False


def unsupported_gpu(device: torch.device) -> str:
    """Why this torch cannot run on the GPU `device` (a P100 or V100 under the CUDA 13 wheel), or "" if it can."""
    capability, archs = torch.cuda.get_device_capability(device), torch.cuda.get_arch_list()
    if not archs or has_kernels(capability, archs):  # an empty list: a build that does not say; let it try
        return ""
    return (f"{torch.cuda.get_device_name(device)} (capability {capability[0]}.{capability[1]}) has no kernels in "
            f"torch {torch.__version__}, built for {' '.join(archs)}: install a torch built for this GPU (docs/gpu.md)")


def resolve_precision(name: str, device: torch.device) -> str:
    """auto = bf16 autocast where the hardware runs it natively, else fp32 (what it gives: docs/performance.md)."""
    if device.type == "cuda":
        return cuda_precision(name, torch.cuda.get_device_capability(device))
    if name != "auto":
        return name
    return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def cuda_precision(name: str, capability: tuple[int, int]) -> str:
    """--precision on a GPU of `capability`: bf16 only where it is native (8.0 and newer), else fp32.

    torch.cuda.is_bf16_supported() also counts emulated bf16 (a T4, a V100) and asks about the current
    device, not the run's. fp16 with a GradScaler is not offered: it was never measured faster here.
    """
    native = capability >= BF16_CAPABILITY
    if name == "bf16" and not native:
        raise UserError(f"--precision bf16: this GPU (capability {capability[0]}.{capability[1]}) has no native "
                        "bfloat16 (8.0 and newer do); use --precision fp32")
    if name == "auto":
        return "bf16" if native else "fp32"
    return name


def use_fast_kernels(device: torch.device) -> None:
    """TF32 matmuls and cuDNN's autotuner on CUDA (fp32 runs keep their fp32 storage)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


class _SkipInitOnMeta(TorchFunctionMode):
    """Skip in-place ops (weight init) on meta tensors: they have no values to fill, and the meta kernels of
    the random ones import torch._dynamo, which would cost every run seconds before it starts."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if name.endswith("_") and not name.startswith("__") and target is not None and target.is_meta:
            return target
        return func(*args, **kwargs)


def parameter_count(model_cfg: ModelConfig, classifier: bool = False) -> int:
    """G's and D's parameters, counted on shapes alone: nothing is allocated."""
    with torch.device("meta"), _SkipInitOnMeta():
        generator, discriminator = Generator(model_cfg), Discriminator(model_cfg, classifier)
    return sum(p.numel() for m in (generator, discriminator) for p in m.parameters())


def check_model_fits(model_cfg: ModelConfig, device: torch.device, classifier: bool = False) -> None:
    """Refuse, before allocating anything, models whose weights, gradients and Adam state cannot fit."""
    parameters = parameter_count(model_cfg, classifier)
    needed = parameters * 4 * 4  # fp32 weights, their gradients, Adam's two moments
    available = available_memory(device)
    if available is not None and needed > available:
        raise UserError(f"the models have {parameters / 1e6:,.0f}M parameters and need {needed / 2**30:,.1f} GiB for "
                        f"weights, gradients and Adam state; {available / 2**30:,.1f} GiB is available on {device}: "
                        "lower --latent-dim, --g-width, --d-width or --d-blocks")


@contextlib.contextmanager
def moving_to(device: torch.device, what: str):
    """Running out of memory while putting `what` on the device: one line, before training starts."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(e):
            raise
        raise UserError(f"out of memory on {device} while moving {what} to it: train on fewer images (--limit), "
                        "or on the CPU (--device cpu)") from None


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
