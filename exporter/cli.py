"""`python -m exporter generator.pth`: export, prove parity, report; errors as one line."""

from __future__ import annotations

import argparse
import sys

from infer.errors import UserError

from .export import DEFAULT_OPSET, PARITY_BATCHES, TOLERANCE, export
from .triton import MAX_BATCH_SIZE, MODEL_NAME, write_triton_repo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m exporter",
        description="Convert a trained generator to one self-contained ONNX file and check it against PyTorch.",
        epilog="examples:\n  python -m exporter artifacts/generator.pth\n"
               "  python -m exporter artifacts/checkpoints/last.pt --out last.onnx\n"
               "  python -m exporter netG_epoch_24.pth --fp16      # a pytorch/examples dcgan generator\n"
               "  python -m exporter artifacts/generator.pth --triton-repo models/   # + a Triton model repository",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("generator", help="generator.pth, a training checkpoint (.pt), or a pytorch/examples netG .pth")
    p.add_argument("--out", help="output .onnx file (default: generator.onnx beside the input)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 18 (default {DEFAULT_OPSET})")
    p.add_argument("--fp16", action="store_true",
                   help="float16 weights and compute (float32 in and out): half the file")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare onnxruntime with PyTorch before writing (default on)")
    p.add_argument("--source", choices=["auto", "mnist-gen", "pytorch-examples"], default="auto",
                   help="what the input is (default: detected from its contents)")
    p.add_argument("--triton-repo", metavar="DIR",
                   help=f"also write a Triton Inference Server model repository: DIR/{MODEL_NAME}/config.pbtxt "
                        f"and DIR/{MODEL_NAME}/1/model.onnx")
    p.add_argument("--triton-max-batch-size", type=int, default=MAX_BATCH_SIZE,
                   help=f"max_batch_size of the Triton config; its dynamic batcher groups requests up to it "
                        f"(default {MAX_BATCH_SIZE})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.triton_max_batch_size < 1:  # before the export, so a bad value writes nothing
            raise UserError(f"--triton-max-batch-size must be >= 1, got {args.triton_max_batch_size}")
        report = export(args.generator, args.out, args.opset, args.fp16, args.check, args.source)
        triton = None
        if args.triton_repo:
            triton = write_triton_repo(report.path, args.triton_repo, args.triton_max_batch_size)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = report.metadata
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, opset {report.opset}, {meta['precision']}, "
          f"{meta['architecture']})")
    print(f"inputs: {', '.join(report.inputs)}; outputs: {', '.join(report.outputs)}; batch axis dynamic")
    bound = TOLERANCE[meta["precision"]]
    for provider, diffs in report.parity.items():
        figures = ", ".join(f"batch {b}: {diffs[b]:.2e}" for b in PARITY_BATCHES)
        print(f"parity vs PyTorch on {provider}: max abs diff {figures} (bound {bound:g})")
    if not args.check:
        print("parity check skipped (--no-check)")
    if triton is not None:
        print(f"wrote Triton model repository {triton} (config.pbtxt, 1/model.onnx); serve it with "
              f"tritonserver --model-repository={triton.parent}")
    return 0
