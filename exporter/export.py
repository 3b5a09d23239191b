"""generator.pth -> one self-contained ONNX file with a dynamic batch axis, checked against PyTorch.

The ONNX file carries what `infer` needs in its metadata (latent size, image size, classes, ...),
so the runtime never guesses. The file is moved into place only after the parity check passes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infer import __version__
from infer.errors import UserError, first_line
from infer.files import atomic_path
from trainer.checkpoint import (
    CHECKPOINT_FORMAT,
    DISCRIMINATOR_FORMAT,
    GENERATOR_FORMAT,
    generator_from_file,
    load_file,
)
from trainer.model import Generator, ModelConfig

from .subpixel import SubPixelGenerator

DEFAULT_OPSET = 18
PARITY_BATCHES = (1, 3, 64, 257)
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}  # max |onnx - torch fp32 eager| on images in [-1, 1]
# onnxruntime's CUDA provider runs fp32 convolutions and GEMMs in TF32 unless told not to (its `use_tf32`
# option, on by default): 10-bit mantissas, which can move these images past the fp32 bound. The check proves
# the graph, so it runs CUDA in full fp32; what TF32 changes for users is in docs/gpu.md.
CUDA_CHECK_OPTIONS = {"use_tf32": "0"}


@dataclass
class ExportReport:
    path: Path
    size_bytes: int
    opset: int
    inputs: list[str]
    outputs: list[str]
    metadata: dict
    parity: dict = field(default_factory=dict)  # provider -> {batch: max abs diff}
    unchecked: list = field(default_factory=list)  # providers offered here that could not run the check


class ExportableGenerator(nn.Module):
    """The graph infer runs: G in its sub-pixel form, float32 in and out, bad labels fail loudly."""

    def __init__(self, generator: Generator, fp16: bool, sub_pixel: bool = True):
        super().__init__()
        self.cfg = generator.cfg
        generator = copy.deepcopy(generator).eval()  # casting to fp16 and eval mode must not touch the caller's G
        graph = SubPixelGenerator(generator) if sub_pixel else generator  # plain: for benchmarks/infer_speed.py
        self.generator = graph.half() if fp16 else graph
        self.dtype = torch.float16 if fp16 else torch.float32

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.conditional:
            # ONNX Gather reads a negative index from the end (-1 -> digit 9, quietly); send it
            # out of range instead, where onnxruntime raises, as it does for labels >= num_classes.
            labels = torch.where(labels < 0, self.cfg.num_classes, labels)
        return self.generator(z.to(self.dtype), labels).float()


# ---- loading --------------------------------------------------------------------------------


def is_examples_generator(state: dict) -> bool:
    """A pytorch/examples `dcgan` netG state_dict: main.0 ... main.12 transposed convs."""
    w = state.get("main.0.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[2:] == (4, 4) and "main.12.weight" in state


def is_examples_discriminator(state: dict) -> bool:
    w = state.get("main.0.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4 and "main.11.weight" in state and "main.12.weight" not in state


def examples_generator(state: dict, path: Path) -> Generator:
    """Rebuild pytorch/examples' 64x64 netG (nz, ngf read off the weights) as our unconditional G."""
    nz, ngf8 = state["main.0.weight"].shape[:2]
    channels = state["main.12.weight"].shape[1]
    if channels not in (1, 3):
        raise UserError(f"{path}: a pytorch/examples generator with nc={channels}; only nc=1 (grey) or 3 (RGB)")
    cfg = ModelConfig(latent_dim=int(nz), image_size=64, num_classes=0, g_width=int(ngf8) // 8, channels=int(channels),
                      dataset="unknown")
    generator = Generator(cfg)
    try:
        generator.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path}: not a pytorch/examples DCGAN generator ({first_line(e, 120)})") from None
    return generator.eval()


def load_generator(path: Path, source: str = "auto") -> tuple[Generator, dict]:
    """Our generator.pth, a training checkpoint, or a pytorch/examples netG state_dict."""
    obj = load_file(path)
    kind = obj.get("format") if isinstance(obj, dict) else None
    if source == "mnist-gen" or kind in (GENERATOR_FORMAT, CHECKPOINT_FORMAT, DISCRIMINATOR_FORMAT):
        generator, info = generator_from_file(obj, path)
        return generator, {"epochs": info["epochs"], "source": "mnist-gen"}
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if source == "pytorch-examples" or is_examples_generator(obj):
            return examples_generator(obj, path), {"epochs": 0, "source": "pytorch/examples dcgan"}
        if is_examples_discriminator(obj):
            raise UserError(f"{path}: this looks like a discriminator (netD); pass the generator (netG)")
    raise UserError(f"{path}: not a generator (expected mnist-gen generator.pth, a checkpoint, "
                    "or a pytorch/examples netG state_dict)")


# ---- export ---------------------------------------------------------------------------------


def sample_inputs(cfg: ModelConfig, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {"z": rng.standard_normal((batch, cfg.latent_dim), dtype=np.float32)}
    if cfg.conditional:
        inputs["labels"] = np.arange(batch, dtype=np.int64) % cfg.num_classes
    return inputs


def build_metadata(cfg: ModelConfig, info: dict, source_sha256: str, fp16: bool) -> dict[str, str]:
    kind = "conditional" if cfg.conditional else "unconditional"
    return {
        "latent_dim": str(cfg.latent_dim),
        "image_size": str(cfg.image_size),
        "num_classes": str(cfg.num_classes),
        "channels": str(cfg.channels),
        "dataset": cfg.dataset,
        "class_names": json.dumps(list(cfg.labels)),
        "labels": f"int64 in [0, {cfg.num_classes})" if cfg.conditional else "none",
        "output_range": "-1,1",
        "architecture": f"dcgan-{cfg.image_size}-{kind}",
        "g_width": str(cfg.g_width),
        "precision": "fp16" if fp16 else "fp32",
        "training_epochs": str(info["epochs"]),
        "source": info["source"],
        "source_sha256": source_sha256,
        "mnist_gen_version": __version__,
    }


def to_onnx_proto(generator: Generator, opset: int, fp16: bool, sub_pixel: bool = True):
    """Dynamo export in eval mode with a dynamic batch axis, weights inside the file."""
    cfg = generator.cfg
    model = ExportableGenerator(generator, fp16, sub_pixel).eval()
    example = {k: torch.from_numpy(v) for k, v in sample_inputs(cfg, 4).items()}
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():  # z and labels share one batch axis, which the exporter remarks on
        warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
        program = torch.onnx.export(
            model, tuple(example.values()), dynamo=True, opset_version=opset,
            dynamic_shapes=tuple({0: batch} for _ in example), input_names=list(example), output_names=["images"],
            external_data=False, optimize=True, verbose=False,
        )
    return program.model_proto


def parity(proto_bytes: bytes, generator: Generator, providers: list[str]) -> dict:
    """Max |onnxruntime - torch fp32 eager| per provider and batch size; a provider that cannot run here is left out."""
    results = {}
    for provider in providers:
        session = provider_session(proto_bytes, provider)
        if session is None:
            continue
        results[provider] = {}
        for batch in PARITY_BATCHES:
            inputs = sample_inputs(generator.cfg, batch, seed=batch)
            try:
                (onnx_images,) = session.run(["images"], inputs)
            except Exception:  # noqa: BLE001 - CUDA may fail only at its first run (a missing cuDNN)
                if provider == "CPUExecutionProvider":
                    raise
                del results[provider]
                break
            with torch.no_grad():
                labels = torch.from_numpy(inputs["labels"]) if "labels" in inputs else None
                torch_images = generator(torch.from_numpy(inputs["z"]), labels).numpy()
            if onnx_images.shape != torch_images.shape:
                raise UserError(f"parity check failed: shape {onnx_images.shape} != {torch_images.shape}")
            results[provider][batch] = float(np.abs(onnx_images - torch_images).max())
    return results


def provider_session(proto_bytes: bytes, provider: str):
    """A session that really runs on `provider` (CUDA in full fp32), or None where it cannot start here."""
    import onnxruntime as ort

    if provider == "CPUExecutionProvider":
        return ort.InferenceSession(proto_bytes, providers=[provider])
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a CUDA provider that cannot load logs pages; leaving it out of the report says it
    try:
        session = ort.InferenceSession(proto_bytes, opts, providers=[(provider, CUDA_CHECK_OPTIONS)])
    except Exception:  # noqa: BLE001 - onnxruntime raises plain RuntimeError/Fail variants
        return None
    return session if session.get_providers()[0] == provider else None


def available_providers() -> list[str]:
    import onnxruntime as ort

    wanted = ["CPUExecutionProvider"]
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        wanted.append("CUDAExecutionProvider")
    return wanted


def export(src: str | os.PathLike, out: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
           fp16: bool = False, check: bool = True, source: str = "auto") -> ExportReport:
    import onnx

    src = Path(src)
    out = Path(out) if out is not None else src.parent / "generator.onnx"
    if opset < 18:
        raise UserError(f"--opset {opset}: the exporter needs opset 18 or newer")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'generator.onnx'}")
    generator, info = load_generator(src, source)
    sha256 = hashlib.sha256(src.read_bytes()).hexdigest()
    proto = to_onnx_proto(generator, opset, fp16)
    metadata = build_metadata(generator.cfg, info, sha256, fp16)
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = "mnist-gen DCGAN generator: z (and labels) -> images in [-1, 1]"
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()

    report = ExportReport(out, len(data), opset, [i.name for i in proto.graph.input],
                          [o.name for o in proto.graph.output], metadata)
    if check:
        providers = available_providers()
        report.parity = parity(data, generator, providers)
        report.unchecked = [p for p in providers if p not in report.parity]
        worst = max(d for per_batch in report.parity.values() for d in per_batch.values())
        bound = TOLERANCE["fp16" if fp16 else "fp32"]
        if not worst <= bound:
            raise UserError(f"parity check failed: max abs difference {worst:.3g} > {bound:g}; nothing written")
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write ({e.strerror or e})") from None
    return report
