"""Where the run computes: the device, its precision, whether the models fit, and out-of-memory errors."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from infer.errors import UserError

from .model import Discriminator, Generator, ModelConfig


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


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
