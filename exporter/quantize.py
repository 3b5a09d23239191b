"""fp32 generator ONNX -> int8 ONNX with onnxruntime's static quantization, written only if it scores as well.

onnxruntime.quantization does the work (quant_pre_process, then quantize_static: QDQ format,
per-channel int8 weights, uint8 activations), calibrated on 16,384 seeded latents that cycle through every
label, so the same input gives the same file. docs/int8.md has the measurements behind each choice.

A max-abs-difference parity means nothing at int8 (single pixels move by up to 0.5 while the digits
look the same), so the gate is the project's own scorer: both models draw the same images' latents,
and the int8 file is refused when its FID rises or its conditional accuracy falls by more than a
bound. Models the scorer cannot read (64x64) get a pixel-statistics bound instead, and say so.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infer.errors import UserError
from infer.files import write_bytes_atomic
from infer.generator import OnnxGenerator, generate_batches
from infer.protocol import SCORE_BATCH, SCORE_IMAGES, SCORE_SEED
from infer.score import requested_labels

# seeded latents: on the 32-wide G, 16,384 kept int8 within 0.03 FID of fp32 for three calibration seeds, where
# 1,024 lost 0.09-0.16 (docs/int8.md); about 10 s of quantizing on 2 cores
CALIBRATION_SIZE = 16384
CALIBRATION_SEED = 0
MAX_CALIBRATION = 65_536  # memory stays flat, but time grows with every latent (docs/int8.md)
CALIBRATION_BATCH = 64
GATE_IMAGES, GATE_SEED = SCORE_IMAGES, SCORE_SEED  # the scoring protocol's, so the figures compare
MAX_FID_RISE = 0.3  # FID points
MAX_ACCURACY_DROP = 0.005  # conditional accuracy, 0.5 points
# mean |int8 - fp32| per pixel on the same latents over the fp32 pixels' standard deviation; where the bound
# sits between good and bad calibrations: docs/int8.md
MAX_PIXEL_DIFF = 0.03
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


@dataclass
class Gate:
    """Both models' figures on the same latents, and whether the int8 one passes."""

    kind: str  # "score" (FID and accuracy) or "pixels" (no scorer for this data)
    fp32: dict = field(default_factory=dict)
    int8: dict = field(default_factory=dict)
    passed: bool = True
    reason: str = ""


@dataclass
class QuantizeReport:
    path: Path
    size_bytes: int
    fp32_size_bytes: int
    metadata: dict
    gate: Gate | None  # None with check=False


class LatentReader:
    """onnxruntime CalibrationDataReader: seeded z ~ N(0, std^2), labels cycling 0..C-1, in batches."""

    def __init__(self, latent_dim: int, num_classes: int, size: int, seed: int, std: float = 1.0):
        rng = np.random.default_rng(seed)
        z = (std * rng.standard_normal((size, latent_dim))).astype(np.float32)
        labels = np.arange(size, dtype=np.int64) % num_classes if num_classes else None
        batches = [{"z": z[i : i + CALIBRATION_BATCH]} for i in range(0, size, CALIBRATION_BATCH)]
        if labels is not None:
            for i, batch in enumerate(batches):
                batch["labels"] = labels[i * CALIBRATION_BATCH : (i + 1) * CALIBRATION_BATCH]
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)


def check_calibration(calibration: int) -> None:
    if not 1 <= calibration <= MAX_CALIBRATION:
        raise UserError(f"--calibration {calibration}: give 1 to {MAX_CALIBRATION:,} latents")


def check_fp32_generator(path: Path) -> OnnxGenerator:
    """The input must be an fp32 mnist-gen generator: not another model, not fp16, not already quantized."""
    import onnx

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    generator = OnnxGenerator.load(path, "cpu")  # one-line errors for corrupt and non-generator files
    precision = generator.metadata.get("precision", "fp32")
    ops = {node.op_type for node in onnx.load(path, load_external_data=False).graph.node}
    if precision == "int8" or ops & QUANTIZED_OPS:
        raise UserError(f"{path}: already quantized (precision {precision}); quantize the fp32 model")
    if precision != "fp32":
        raise UserError(f"{path}: a {precision} model; --int8 quantizes the fp32 one")
    return generator


def quantize_bytes(fp32_path: Path, generator: OnnxGenerator, calibration: int, method: str = "minmax",
                   quant_format: str = "qdq", per_channel: bool = True, activations: str = "uint8",
                   seed: int = CALIBRATION_SEED, latent_std: float = 1.0) -> bytes:
    """The int8 model as bytes. The non-default arguments are for benchmarks/int8_options.py and tests."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    reader = LatentReader(generator.latent_dim, generator.num_classes, calibration, seed, latent_std)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns on the root logger about 1-D (BatchNorm) weights
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-gen-int8-") as tmp:
            prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
            quant_pre_process(str(fp32_path), str(prepared))  # shape inference and fusions first, as ORT advises
            quantize_static(
                str(prepared), str(quantized), reader,
                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
            )
            return quantized.read_bytes()
    finally:
        root.setLevel(level)


def _images(generator: OnnxGenerator, n: int, seed: int) -> np.ndarray:
    """The same latents and labels score_generator draws, through the runtime's one generation loop."""
    labels = requested_labels(n, generator.num_classes if generator.conditional else 0)
    batches = generate_batches(generator.run, generator.latent_dim, n, seed, labels, SCORE_BATCH)
    return np.concatenate([images for _, images in batches])


def scores(generator: OnnxGenerator, n: int = GATE_IMAGES, seed: int = GATE_SEED) -> dict[str, float]:
    """FID (and conditional accuracy) as `mnist-gen score --n N --seed S` reports them."""
    from infer.score import load_scorer, score_generator

    classifier, stats = load_scorer()
    result = score_generator(generator.run, generator.latent_dim, generator.num_classes, stats, classifier, n, seed)
    return {k: float(result[k]) for k in ("fid", "conditional_accuracy") if k in result}


def mnist_scorer_fits(generator: OnnxGenerator) -> bool:
    """The bundled scorer judges MNIST models (grey digits, at any size: it resizes); others get the pixel bound."""
    return generator.metadata.get("dataset", "mnist") == "mnist" and generator.channels == 1


def quality_gate(fp32: OnnxGenerator, int8: OnnxGenerator, n: int = GATE_IMAGES, seed: int = GATE_SEED) -> Gate:
    """Score both models on the same latents; refuse the int8 one when it is measurably worse."""
    if not mnist_scorer_fits(fp32):
        reference = _images(fp32, n, seed)
        diff = float(np.abs(_images(int8, n, seed) - reference).mean() / reference.std())
        gate = Gate("pixels", {}, {"relative_pixel_diff": diff})
        if not diff <= MAX_PIXEL_DIFF:
            gate.passed = False
            gate.reason = f"mean |int8 - fp32| per pixel is {diff:.4f} of the pixels' spread (bound {MAX_PIXEL_DIFF})"
        return gate
    gate = Gate("score", scores(fp32, n, seed), scores(int8, n, seed))
    rise = gate.int8["fid"] - gate.fp32["fid"]
    if not rise <= MAX_FID_RISE:
        gate.passed = False
        gate.reason = (f"FID {gate.fp32['fid']:.3f} -> {gate.int8['fid']:.3f}, a rise of {rise:.3f} "
                       f"(bound {MAX_FID_RISE})")
    elif "conditional_accuracy" in gate.fp32:
        drop = gate.fp32["conditional_accuracy"] - gate.int8["conditional_accuracy"]
        if not drop <= MAX_ACCURACY_DROP:
            gate.passed = False
            gate.reason = (f"conditional accuracy {gate.fp32['conditional_accuracy']:.2%} -> "
                           f"{gate.int8['conditional_accuracy']:.2%}, a fall of {drop * 100:.2f} points "
                           f"(bound {MAX_ACCURACY_DROP * 100:g})")
    return gate


def quantize(fp32_path: str | Path, out: str | Path, calibration: int = CALIBRATION_SIZE, check: bool = True,
             latent_std: float = 1.0) -> QuantizeReport:
    """Quantize an fp32 generator ONNX file into `out`, through the quality gate; nothing written on failure."""
    fp32_path, out = Path(fp32_path), Path(out)
    check_calibration(calibration)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'generator.int8.onnx'}")
    fp32 = check_fp32_generator(fp32_path)
    data = quantize_bytes(fp32_path, fp32, calibration, latent_std=latent_std)
    with tempfile.TemporaryDirectory(prefix="mnist-gen-int8-") as tmp:
        candidate = Path(tmp) / "generator.int8.onnx"
        candidate.write_bytes(data)
        int8 = OnnxGenerator.load(candidate, "cpu")
        gate = quality_gate(fp32, int8) if check else None
    if gate is not None and not gate.passed:
        raise UserError(f"int8 model refused: {gate.reason}; nothing written")
    metadata = int8_metadata(fp32, fp32_path, calibration, gate)
    data = with_metadata(data, metadata)
    try:
        write_bytes_atomic(out, data)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write ({e.strerror or e})") from None
    return QuantizeReport(out, len(data), fp32_path.stat().st_size, metadata, gate)


def int8_metadata(fp32: OnnxGenerator, fp32_path: Path, calibration: int, gate: Gate | None) -> dict[str, str]:
    """The fp32 model's metadata, plus how this int8 model was made and what the gate measured."""
    metadata = dict(fp32.metadata)
    metadata.update({
        "precision": "int8",
        "quantization": "onnxruntime static, QDQ, per-channel int8 weights, uint8 activations",
        "calibration_size": str(calibration),
        "calibration_method": "minmax",
        "calibration_seed": str(CALIBRATION_SEED),
        "calibration_latents": "z ~ N(0, 1), labels cycling 0..num_classes-1",
        "fp32_sha256": hashlib.sha256(fp32_path.read_bytes()).hexdigest(),
    })
    if gate is not None:
        for name, figures in (("fp32", gate.fp32), ("int8", gate.int8)):
            metadata.update({f"gate_{name}_{k}": f"{v:.6g}" for k, v in figures.items()})
    return metadata


def with_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load_from_string(data)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    return model.SerializeToString()
