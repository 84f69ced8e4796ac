"""int8 vs fp32 in one run: latency at batch 1, throughput at batch 16, top-1 agreement, accuracy.

Takes an exported fp32 model (``longteng export RUN --out model.onnx``) and the dataset it was
trained on. Every int8 mode of longteng.export.quantize is calibrated on train photos (through
the project's loader), compared with fp32 on the val split, and timed against fp32 in the same
process, alternating rounds so a noisy machine slows both alike.

    .venv/bin/python bench/bench_int8.py runs/demo/model.onnx datasets/demo [--threads 2] [--modes ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from longteng.data.layout import scan_dataset
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.export.quantize import INT8_MODES, compare_int8, int8_mode, quantize_int8
from longteng.training.cache import decode_images
from longteng.training.onnx_scoring import onnx_outputs


def _split(root: Path, model: OnnxModel, split: str, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    index = {name: i for i, name in enumerate(model.metadata.class_names)}
    records = [r for r in scan_dataset(root) if r.split == split and r.label in index]
    if len(records) > limit:
        keep = np.random.default_rng(seed).choice(len(records), limit, replace=False)
        records = [records[i] for i in sorted(keep)]
    decoded = decode_images(root, records, model.metadata.preprocess)
    return np.asarray(decoded.pixels), np.array([index[r.label] for r in decoded.records])


def _seconds_per_call(model: OnnxModel, batch: np.ndarray, repeats: int) -> float:
    model.run(batch, outputs=("logits",))  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.run(batch, outputs=("logits",))
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _timings(models: dict[str, OnnxModel], pixels: np.ndarray, batch: int, rounds: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each model, measured in alternating rounds."""
    data = pixels[np.arange(batch) % len(pixels)]
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            samples[name].append(_seconds_per_call(model, data, repeats))
    return {name: float(np.median(values)) for name, values in samples.items()}


def _copy_metadata(target: Path, source: Path) -> None:
    model = onnx.load(str(target))
    onnx.helper.set_model_props(model, {p.key: p.value for p in onnx.load(str(source)).metadata_props})
    onnx.save(model, str(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="exported fp32 .onnx")
    parser.add_argument("data", type=Path, help="dataset root: train split calibrates, val split judges")
    parser.add_argument("--modes", nargs="+", default=list(INT8_MODES), choices=list(INT8_MODES))
    parser.add_argument("--calibration", type=int, default=200, help="train photos used for calibration")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    options = RuntimeOptions(threads=args.threads, device="cpu")
    fp32 = OnnxModel(args.model, options)
    calibration, _ = _split(args.data, fp32, "train", args.calibration)
    val_pixels, val_labels = _split(args.data, fp32, "val", 10**9)
    fp32_logits = onnx_outputs(fp32, val_pixels, ("logits",))["logits"]
    print(f"{args.model}: {len(calibration)} calibration photos, {len(val_pixels)} val photos, "
          f"fp32 val accuracy {np.mean(fp32_logits.argmax(1) == val_labels):.4f}")

    models = {"fp32": fp32}
    quality = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.modes:
            path = Path(scratch) / f"{name}.onnx"
            started = time.perf_counter()
            quantize_int8(args.model, path, calibration, fp32.metadata.preprocess, int8_mode(name))
            _copy_metadata(path, args.model)
            models[name] = OnnxModel(path, options)
            int8_logits = onnx_outputs(models[name], val_pixels, ("logits",))["logits"]
            quality[name] = compare_int8(fp32_logits, int8_logits, val_labels, name, len(calibration))
            print(f"  quantized {name} in {time.perf_counter() - started:.1f} s")

        latency = _timings(models, val_pixels, 1, args.rounds, repeats=20)
        throughput = _timings(models, val_pixels, 16, args.rounds, repeats=3)

    print(f"\n{'model':<28} {'agree':>7} {'acc chg':>8} {'b1 ms':>8} {'b1 x':>6} {'b16 img/s':>10} {'b16 x':>6}")
    for name in models:
        result = quality.get(name)
        agree = f"{result.top1_agreement:.2%}" if result else "-"
        change = f"{result.accuracy_change:+.4f}" if result else "-"
        print(
            f"{name:<28} {agree:>7} {change:>8} {latency[name] * 1000:>8.2f} {latency['fp32'] / latency[name]:>6.2f} "
            f"{16 / throughput[name]:>10.1f} {throughput['fp32'] / throughput[name]:>6.2f}"
        )
    print("\nx = speed-up over fp32 (above 1: int8 is faster); agree = top-1 agreement with fp32 on val.")


if __name__ == "__main__":
    main()
