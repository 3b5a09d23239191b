"""Which int8 form to ship: every onnxruntime quantization option that matters, measured in one run.

One option changes at a time from the shipped choice (QDQ, per-channel int8 weights, uint8
activations, MinMax on 16,384 latents); each row gives the file size, images/s at batch 1, 64 and
256 on the CPU provider (all models interleaved, so drift on a shared machine hits each alike), and
the quality gate's figures (FID, conditional accuracy on the same 10,000 latents).

    python benchmarks/int8_options.py [--model infer/assets/generator.onnx] [--seconds 1] [--n 10000]
    python benchmarks/int8_options.py --quick   # checks the script runs (64 calibration latents, 500 images)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHIPPED = {"quant_format": "qdq", "per_channel": True, "activations": "uint8", "method": "minmax", "calibration": 16384}
VARIANTS = {
    "shipped: QDQ, per-channel, uint8 activations, MinMax, 16384": {},
    "QOperator format": {"quant_format": "qoperator"},
    "per-tensor weights": {"per_channel": False},
    "int8 activations": {"activations": "int8"},
    "Entropy calibration": {"method": "entropy"},
    "Percentile calibration": {"method": "percentile"},
    "calibration on 128 latents": {"calibration": 128},
    "calibration on 1024 latents (the default before 2026-12-07)": {"calibration": 1024},
    "calibration on 4096 latents": {"calibration": 4096},
    # how much of the above is the draw of calibration latents rather than the option
    "shipped, calibration seed 1": {"seed": 1},
    "shipped, calibration seed 2": {"seed": 2},
    "calibration on 1024 latents, seed 1": {"calibration": 1024, "seed": 1},
}


def images_per_second(session, feeds: dict, seconds: float) -> float:
    session.run(None, feeds)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        session.run(None, feeds)
        count += 1
    return len(feeds["z"]) * count / (time.perf_counter() - start)


def throughput(models: dict, batches, seconds: float, rounds: int = 3) -> dict:
    """images/s per model and batch, interleaved model by model within each round (the machine is shared,
    so its speed drifts; interleaving lets drift hit every model alike). Median of the rounds."""
    import numpy as np

    rates = {name: {b: [] for b in batches} for name in models}
    for batch in batches:
        generator = next(iter(models.values()))
        z = np.random.default_rng(0).standard_normal((batch, generator.latent_dim), dtype=np.float32)
        feeds = {"z": z} | ({"labels": np.arange(batch) % generator.num_classes} if generator.conditional else {})
        for _ in range(rounds):
            for name, model in models.items():
                rates[name][batch].append(images_per_second(model.session, feeds, seconds / rounds))
    return {name: [float(np.median(per[b])) for b in batches] for name, per in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "infer" / "assets" / "generator.onnx")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per throughput point")
    parser.add_argument("--n", type=int, default=10_000, help="images scored per model")
    parser.add_argument("--quick", action="store_true",
                        help="a small run that checks the script works: each option once (no calibration "
                             "sizes or seeds), 64 calibration latents, 500 images scored, 0.05 s per throughput "
                             "point (its figures are not the study's)")
    args = parser.parse_args()
    variants = VARIANTS
    if args.quick:
        args.n, args.seconds = 500, 0.05
        variants = {name: change for name, change in VARIANTS.items() if not {"calibration", "seed"} & set(change)}

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from exporter.quantize import check_fp32_generator, quantize_bytes, scores
    from infer.generator import OnnxGenerator

    fp32 = check_fp32_generator(args.model)
    batches = (1, 64, 256)
    print(f"model {args.model}; onnxruntime {ort.__version__}; {args.n} images scored per model, seed 0; "
          f"images/s: median of 3 interleaved rounds, {args.seconds:g} s per model and batch in all"
          + ("; --quick: 64 calibration latents for every row" if args.quick else ""), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths, took = {"fp32": args.model}, {}
        for i, (name, change) in enumerate(variants.items()):
            options = SHIPPED | change
            calibration = min(options.pop("calibration"), 64) if args.quick else options.pop("calibration")
            paths[name] = Path(tmp) / f"variant{i}.onnx"
            started = time.perf_counter()
            paths[name].write_bytes(quantize_bytes(args.model, fp32, calibration, **options))
            took[name] = time.perf_counter() - started
        dynamic = "dynamic quantization (int8 weights, activations quantized per call)"
        paths[dynamic] = Path(tmp) / "dynamic.onnx"
        started = time.perf_counter()
        quantize_dynamic(str(args.model), str(paths[dynamic]), weight_type=QuantType.QInt8)
        took[dynamic] = time.perf_counter() - started
        models = {name: OnnxGenerator.load(path, "cpu") for name, path in paths.items()}
        quality = {name: scores(model, args.n) for name, model in models.items()}
        rates = throughput(models, batches, args.seconds)

        print("\n| model | MB | quantize s | images/s batch 1 | batch 64 | batch 256 | x fp32 at 256 | FID "
              "| conditional accuracy |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, path in paths.items():
            accuracy = quality[name].get("conditional_accuracy")
            print(f"| {name} | {path.stat().st_size / 1e6:.2f} | " + (f"{took[name]:.1f}" if name in took else "-")
                  + " | " + " | ".join(f"{r:.0f}" for r in rates[name])
                  + f" | {rates[name][-1] / rates['fp32'][-1]:.2f}x | {quality[name]['fid']:.3f} | "
                  + (f"{accuracy:.2%}" if accuracy is not None else "-") + " |")


if __name__ == "__main__":
    main()
