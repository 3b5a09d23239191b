"""An exported ONNX generator behind onnxruntime: model resolution, provider choice, batched generation.

Imports numpy, onnxruntime and the standard library only: never torch, trainer or exporter.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError, first_line

BUNDLED_MODEL = Path(__file__).parent / "assets" / "generator.onnx"  # fp32: for CUDA, and `--model fp32`
BUNDLED_INT8 = Path(__file__).parent / "assets" / "generator.int8.onnx"  # the CPU default (MODEL_CARD.md)
BUNDLED = {"fp32": BUNDLED_MODEL, "int8": BUNDLED_INT8}
LOCAL_MODEL = Path("artifacts") / "generator.onnx"
REQUIRED_METADATA = ("latent_dim", "image_size", "num_classes")
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def resolve_model(model: str | os.PathLike | None, provider: str = "auto") -> Path:
    """--model, else ./artifacts/generator.onnx, else the pretrained model shipped in the package.

    The package ships it twice: int8 runs by default on CPU (faster there, a quarter of the size, about
    the same FID: MODEL_CARD.md, docs/int8.md), fp32 on CUDA, where onnxruntime has no int8
    convolutions. `--model fp32` or `--model int8` picks one.
    """
    if model is not None:
        path = Path(model)
        if not path.is_file() and str(model) in BUNDLED:
            path = BUNDLED[str(model)]
        if not path.is_file():
            raise UserError(f"model {path}: no such file")
        return path
    on_cuda = provider == "cuda" or (provider == "auto" and cuda_available())
    for path in (LOCAL_MODEL, BUNDLED_MODEL if on_cuda else BUNDLED_INT8, BUNDLED_MODEL):
        if path.is_file():
            return path
    raise UserError("no model found: pass --model FILE.onnx, or train and export one "
                    "(python -m trainer && python -m exporter artifacts/generator.pth)")


def session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's default (one thread per core) unless asked: faster than one thread (docs/performance.md).
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # onnxruntime's own warnings would bury our one-line messages
    return opts


def _cuda_missing() -> str:
    """Why CUDA cannot run here, from the quick checks; "" when it may (a session is the real test)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime has no CUDA provider"
    # The provider list includes CUDA even without a driver; checking for it is instant, a failed session is not.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return "no NVIDIA driver (libcuda.so.1) found"
    return ""


def cuda_available() -> bool:
    return not _cuda_missing()


def _cuda_session(model_bytes: bytes, opts):
    """A session that really runs on CUDA, or (None, why not)."""
    import onnxruntime as ort

    missing = _cuda_missing()
    if missing:
        return None, missing
    if hasattr(ort, "preload_dlls"):  # find pip-installed CUDA/cuDNN libraries without torch
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - a failed preload only means CUDA will not start
            pass
    # A failing CUDA provider logs pages; we say it in one line. The session's own severity, not the
    # process-wide default logger's: onnxruntime cannot read that one back, so changing it would not be undone.
    severity, opts.log_severity_level = opts.log_severity_level, 4
    try:
        session = ort.InferenceSession(model_bytes, opts, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises plain RuntimeError/Fail variants
        return None, str(e).strip().splitlines()[0][:120] if str(e).strip() else "session creation failed"
    finally:
        opts.log_severity_level = severity
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return None, "the CUDA libraries or a GPU are not usable here"
    return session, ""


def precision(session) -> str:
    return session.get_modelmeta().custom_metadata_map.get("precision", "fp32")


@dataclass
class OnnxGenerator:
    """A loaded generator: its session, the provider that really runs, and what its metadata says."""

    path: Path
    session: object
    provider: str
    metadata: dict
    latent_dim: int
    image_size: int
    num_classes: int
    note: str = ""  # why auto fell back to CPU, if it did

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def channels(self) -> int:
        """1 grey or 3 RGB (models exported before colour support carry no `channels`: grey)."""
        return int(self.metadata.get("channels", 1))

    @property
    def class_names(self) -> list[str]:
        """One name per class, from the metadata of models trained on named classes; else "0".."N-1"."""
        try:
            names = json.loads(self.metadata.get("class_names", "[]"))
        except ValueError:
            names = []
        if isinstance(names, list) and len(names) == self.num_classes:
            return [str(name) for name in names]
        return [str(c) for c in range(self.num_classes)]

    def class_index(self, name: str, option: str = "--class") -> int:
        """The label of the class called `name` (exact, else the one case-insensitive match)."""
        if not self.conditional:
            raise UserError(f"{option}: this model is unconditional; it cannot draw a chosen class")
        names = self.class_names
        if name in names:
            return names.index(name)
        folded = [i for i, n in enumerate(names) if n.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise UserError(f"{option} {name!r}: this model's classes are {shown}")

    @classmethod
    def load(cls, path: str | os.PathLike, provider: str = "auto", threads: int | None = None) -> OnnxGenerator:
        import onnxruntime as ort

        path = Path(path)
        if provider not in ("auto", "cpu", "cuda"):
            raise UserError(f"--provider must be auto, cpu or cuda, got {provider!r}")
        try:
            model_bytes = path.read_bytes()
        except OSError as e:
            raise UserError(f"model {path}: cannot read ({e.strerror or e})") from None
        opts = session_options(threads)
        session, note = None, ""
        if provider in ("auto", "cuda"):
            session, note = _cuda_session(model_bytes, opts)
            if session is None and provider == "cuda":
                raise UserError(f"--provider cuda: CUDA cannot run here ({note}); use --provider cpu")
            if session is not None and provider == "auto" and precision(session) == "int8":
                # onnxruntime's CUDA provider has no int8 convolutions: it would run the QDQ graph's
                # convolutions in fp32 between (de)quantize nodes, int8's rounding without its speed.
                session, note = None, "an int8 model, whose int8 kernels are onnxruntime's CPU ones"
        if session is None:
            try:
                session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - any load failure means a bad model file
                first = first_line(e)
                raise UserError(f"model {path}: not a valid ONNX model ({first})") from None
        meta = session.get_modelmeta().custom_metadata_map
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise UserError(f"model {path}: not an mnist-gen generator (metadata lacks {', '.join(missing)}); "
                            "export it with python -m exporter")
        generator = cls(path, session, session.get_providers()[0], dict(meta), int(meta["latent_dim"]),
                        int(meta["image_size"]), int(meta["num_classes"]), note)
        generator._check_signature()
        return generator

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        expected = {"z", "labels"} if self.conditional else {"z"}
        if set(inputs) != expected or outputs != ["images"]:
            raise UserError(f"model {self.path}: inputs {sorted(inputs)} / outputs {outputs} are not a generator's "
                            f"(expected {sorted(expected)} -> ['images'])")
        if inputs["z"].shape[-1] != self.latent_dim:
            raise UserError(f"model {self.path}: z has size {inputs['z'].shape[-1]}, metadata says {self.latent_dim}")

    def check_labels(self, labels: list[int], name: str = "--digit") -> None:
        """`name` is how the caller's user spells the option: --digit on the command line, digit over HTTP."""
        if not self.conditional:
            raise UserError(f"{name}: this model is unconditional; it cannot draw a chosen digit")
        bad = [d for d in labels if not 0 <= d < self.num_classes]
        if bad:
            raise UserError(f"{name} {bad[0]}: digits must be in 0..{self.num_classes - 1}")

    def run(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """One batch: z float32 [N, latent_dim] (+ labels int64 [N]) -> images float32 [N, C, H, W]."""
        feeds = {"z": np.ascontiguousarray(z, dtype=np.float32)}
        if self.conditional:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.min(initial=0) < 0 or labels.max(initial=0) >= self.num_classes:
                raise UserError(f"labels must be in 0..{self.num_classes - 1}")
            feeds["labels"] = labels
        return self.session.run(["images"], feeds)[0]


def generate_batches(generate, latent_dim: int, n: int, seed: int, labels: np.ndarray | None, batch_size: int):
    """Yield (start, images) for n images, batch by batch, so memory stays bounded for any n.

    The one generation loop of the project: `mnist-gen infer`, `mnist-gen serve` and scoring (the trainer's
    torch G included) all draw z here, in this order, so the same seed gives the same noise whatever the
    batch size. `generate(z, labels) -> images` is any generator: OnnxGenerator.run or a torch callable.
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        z = rng.standard_normal((count, latent_dim), dtype=np.float32)
        yield start, generate(z, None if labels is None else labels[start : start + count])
