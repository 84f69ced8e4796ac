"""Warm latency of one officer's photo with every detector: decode to verdict, one photo at a time.

Not a test. Loads the exported model once (as the station does), warms it up on one photo,
then judges N photos one by one through `Predictor.predict` (decode, glance, crop, focus,
unknown-object score, registered products, the aligned check when the model carries one, and
the text check's OCR and the artwork check when the model reads print) and reports p50 / p95 per photo, with the
same photos' stages timed apart through the runtime's own functions (inference/two_stage.py,
inference/aligned_check.py, inference/text_check.py, inference/artwork_check.py): decode +
glance input, glance + crop, focus, aligned check, OCR, artwork check. Target (issue 10): p50 at most 300 ms on 2 cores.

    .venv/bin/python bench/bench_latency.py --model RUN/model.onnx --photos DATASET [--n 40] [--threads 2]

Results go to bench/results/latency.json as well.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True, help="a folder of photos (searched recursively)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime and OCR threads (0: their defaults)")
    parser.add_argument("--detection-side", type=int, default=0,
                        help="read the print at this OCR detection side instead of the registry's (to compare sides)")
    args = parser.parse_args()
    from longteng.decision import calibrate_scores
    from longteng.inference.aligned_check import apply_aligned_check
    from longteng.inference.artwork_check import apply_artwork_check
    from longteng.inference.predict import PredictOptions, Predictor
    from longteng.inference.text_check import read_text
    from longteng.inference.two_stage import focus_inputs, prepare_photo

    photos = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n + 1]
    if len(photos) < 2:
        raise SystemExit(f"{args.photos}: needs at least 2 photos")
    predictor = Predictor(args.model, PredictOptions(threads=args.threads, batch_size=1))
    metadata = predictor.metadata
    reads_print = metadata.text_registry is not None
    if reads_print and args.detection_side:
        from dataclasses import replace

        metadata = predictor.model.metadata = replace(
            metadata, text_registry=replace(metadata.text_registry, detection_side=args.detection_side))
    side = metadata.text_registry.detection_side if reads_print else None
    list(predictor.predict(photos[:1]))  # warm-up: sessions, OCR engine, first allocations
    if reads_print:
        read_text(np.zeros((metadata.focus.input_size,) * 2 + (3,), np.uint8), args.threads, side)

    totals, stages = [], {"decode": [], "glance_and_crop": [], "focus": [], "aligned": [], "ocr": [], "artwork": []}
    for photo in photos[1:]:
        started = time.perf_counter()
        list(predictor.predict([photo]))
        totals.append(time.perf_counter() - started)
        # The same photo again, stage by stage, through the functions predict calls.
        t0 = time.perf_counter()
        prepared = prepare_photo(photo, metadata)
        t1 = time.perf_counter()
        crops, _ = focus_inputs(predictor.model, [prepared])
        t2 = time.perf_counter()
        outputs = predictor.model.run(crops, outputs=("probabilities", "embedding"))
        t3 = time.perf_counter()
        if metadata.aligned_check is not None:
            probabilities = calibrate_scores(outputs["probabilities"], metadata.score_calibration, metadata.class_names)
            apply_aligned_check(metadata.aligned_check, crops, probabilities, metadata.decision_classes)
        t3a = time.perf_counter()
        reads = read_text(crops[0], args.threads, side) if reads_print else []
        t4 = time.perf_counter()
        if metadata.artwork_check is not None:
            probabilities = calibrate_scores(outputs["probabilities"], metadata.score_calibration, metadata.class_names)
            apply_artwork_check(metadata.artwork_check, crops, [reads], probabilities, metadata.decision_classes)
        t5 = time.perf_counter()
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3a - t3, t4 - t3a, t5 - t4)):
            stages[name].append(seconds)

    result = {
        "model": str(args.model), "photos": len(totals), "threads": args.threads, "reads_print": reads_print, "detection_side": side,
        "aligned_check": metadata.aligned_check is not None, "artwork_check": metadata.artwork_check is not None,
        "registered_products": [p.name for p in metadata.registered_products],
        "p50_ms": percentile(totals, 50), "p95_ms": percentile(totals, 95), "target_ms": TARGET_MS,
        "stages_p50_ms": {name: percentile(values, 50) for name, values in stages.items()},
        "sizes": sorted({f"{w}x{h}" for w, h in {Image.open(p).size for p in photos[1:]}}),
    }
    out = ROOT / "bench/results/latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"| warm latency, one photo at a time ({result['photos']} photos, {', '.join(result['sizes'])}, OCR side {side}) | p50 {result['p50_ms']:.0f} ms "
          f"| p95 {result['p95_ms']:.0f} ms | target p50 <= {TARGET_MS} ms |")
    print("| stage (p50) | " + " | ".join(f"{k} {v:.0f} ms" for k, v in result["stages_p50_ms"].items()) + " |")
    print(f"(json: {out})")


if __name__ == "__main__":
    main()
