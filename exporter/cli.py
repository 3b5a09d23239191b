"""`python -m exporter generator.pth`: export, prove parity, report; errors as one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infer.errors import UserError

from .export import DEFAULT_OPSET, PARITY_BATCHES, TOLERANCE, export
from .quantize import CALIBRATION_SIZE, GATE_IMAGES, GATE_SEED, MAX_ACCURACY_DROP, MAX_FID_RISE, MAX_PIXEL_DIFF
from .triton import MAX_BATCH_SIZE, MODEL_NAME, write_triton_repo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m exporter",
        description="Convert a trained generator to one self-contained ONNX file and check it against PyTorch.",
        epilog="examples:\n  python -m exporter artifacts/generator.pth\n"
               "  python -m exporter artifacts/checkpoints/last.pt --out last.onnx\n"
               "  python -m exporter netG_epoch_24.pth --fp16      # a pytorch/examples dcgan generator\n"
               "  python -m exporter artifacts/generator.onnx --int8   # -> artifacts/generator.int8.onnx\n"
               "  python -m exporter artifacts/generator.pth --triton-repo models/   # + a Triton model repository",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("generator", help="generator.pth, a training checkpoint (.pt), a pytorch/examples netG .pth, "
                                     "or (with --int8) an fp32 generator .onnx")
    p.add_argument("--out", help="output .onnx file (default beside the input: generator.onnx, "
                                 "with --int8 generator.int8.onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 18 (default {DEFAULT_OPSET})")
    p.add_argument("--fp16", action="store_true",
                   help="float16 weights and compute (float32 in and out): half the file")
    p.add_argument("--int8", action="store_true",
                   help="int8 weights and activations (onnxruntime static quantization): faster on CPU, "
                        "a quarter of the file; written only if it scores as well as fp32")
    p.add_argument("--calibration", type=int,
                   help=f"--int8: seeded latents to calibrate on (default {CALIBRATION_SIZE})")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare onnxruntime with PyTorch, and int8 with fp32, before writing (default on)")
    p.add_argument("--source", choices=["auto", "mnist-gen", "pytorch-examples"], default="auto",
                   help="what the input is (default: detected from its contents)")
    p.add_argument("--triton-repo", metavar="DIR",
                   help=f"also write a Triton Inference Server model repository of the written model: "
                        f"DIR/{MODEL_NAME}/config.pbtxt and DIR/{MODEL_NAME}/1/model.onnx")
    p.add_argument("--triton-max-batch-size", type=int, default=MAX_BATCH_SIZE,
                   help=f"max_batch_size of the Triton config; its dynamic batcher groups requests up to it "
                        f"(default {MAX_BATCH_SIZE})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.triton_max_batch_size < 1:  # before the export, so a bad value writes nothing
            raise UserError(f"--triton-max-batch-size must be >= 1, got {args.triton_max_batch_size}")
        written = export_int8(args) if args.int8 else export_fp(args)
        if args.triton_repo:
            folder = write_triton_repo(written, args.triton_repo, args.triton_max_batch_size)
            print(f"wrote Triton model repository {folder} (config.pbtxt, 1/model.onnx); serve it with "
                  f"tritonserver --model-repository={folder.parent}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def export_fp(args) -> Path:
    """generator.pth (or a checkpoint, or a pytorch/examples netG) -> fp32 or fp16 ONNX, parity-checked."""
    if args.calibration is not None:
        raise UserError("--calibration applies to --int8 only")
    if Path(args.generator).suffix.lower() == ".onnx":
        raise UserError(f"{args.generator}: already ONNX; add --int8 to quantize it")
    report = export(args.generator, args.out, args.opset, args.fp16, args.check, args.source)
    meta = report.metadata
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, opset {report.opset}, {meta['precision']}, "
          f"{meta['architecture']})")
    print(f"inputs: {', '.join(report.inputs)}; outputs: {', '.join(report.outputs)}; batch axis dynamic")
    print_parity(report, args.check)
    return report.path


def print_parity(report, check: bool) -> None:
    bound = TOLERANCE[report.metadata["precision"]]
    for provider, diffs in report.parity.items():
        figures = ", ".join(f"batch {b}: {diffs[b]:.2e}" for b in PARITY_BATCHES)
        print(f"parity vs PyTorch on {provider}: max abs diff {figures} (bound {bound:g})")
    for provider in report.unchecked:
        print(f"parity vs PyTorch on {provider}: not checked, the provider cannot run here "
              "(mnist-gen info says why)")
    if not check:
        print("parity check skipped (--no-check)")


def export_int8(args) -> Path:
    """An fp32 .onnx is quantized as it is; anything else is exported to fp32 (with parity) first."""
    import tempfile

    from .quantize import check_calibration, quantize

    if args.fp16:
        raise UserError("--int8 and --fp16 exclude each other; pick one")
    calibration = CALIBRATION_SIZE if args.calibration is None else args.calibration
    check_calibration(calibration)  # before a .pth's export, not after
    src = Path(args.generator)
    out = Path(args.out) if args.out else src.parent / "generator.int8.onnx"
    if out.resolve() == src.resolve():
        raise UserError(f"--out {out} is the input; the int8 model goes beside the fp32 one, not over it")
    with tempfile.TemporaryDirectory(prefix="mnist-gen-export-") as tmp:
        fp32_path = src
        if src.suffix.lower() != ".onnx":
            fp32 = export(src, Path(tmp) / "generator.onnx", args.opset, False, args.check, args.source)
            print_parity(fp32, args.check)
            fp32_path = fp32.path
        report = quantize(fp32_path, out, calibration, args.check)
    meta = report.metadata
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, fp32 was {report.fp32_size_bytes / 1e6:.2f} MB; "
          f"int8, {meta['architecture']}; calibrated on {meta['calibration_size']} seeded latents, "
          f"{meta['calibration_method']})")
    gate = report.gate
    if gate is None:
        print("quality gate skipped (--no-check)")
    elif gate.kind == "score":
        print(f"quality gate on {GATE_IMAGES:,} images (seed {GATE_SEED}), same latents for both:")
        for name, figures in (("fp32", gate.fp32), ("int8", gate.int8)):
            accuracy = figures.get("conditional_accuracy")
            print(f"  {name}: FID {figures['fid']:.3f}"
                  + (f", conditional accuracy {accuracy:.2%}" if accuracy is not None else ""))
        print(f"  passed: FID rise <= {MAX_FID_RISE}, conditional accuracy drop <= {MAX_ACCURACY_DROP:.1%}")
    else:
        print(f"quality gate: no scorer for {meta.get('dataset', 'these')} images, so a pixel-statistics "
              f"bound: mean |int8 - fp32| per pixel is {gate.int8['relative_pixel_diff']:.4f} of the fp32 pixels' "
              f"standard deviation (bound {MAX_PIXEL_DIFF}) on {GATE_IMAGES:,} images, same latents: passed")
    return report.path
