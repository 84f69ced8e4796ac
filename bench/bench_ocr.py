"""The text check's OCR at several detection sides: time per crop against what the check finds.

Not a test. Needs no model: crops each photo at its generator box, jittered as the trainer
jitters it (about what the glance misses by; training/focus_data.py), at the focus crop's
default size. For each detection side (rapidocr's det_limit_side_len; the registry's
``detection_side``), reads every crop once, learns the registry from the first R genuine
photos of each product, and reports the milliseconds per crop (one thread, as a score worker
reads), the false alarms on the further genuine photos, and the check's recall on counterfeits,
per tell. Only ratios within one run mean anything on a shared machine.

    .venv/bin/python bench/bench_ocr.py --data bench/results/quality_bar/medium-1600-train [--sides 736,512,384]
        [--references 60] [--genuine 100] [--counterfeits 300]

Results go to bench/results/ocr.json as well.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def crops_of(root: Path, records: list) -> list[np.ndarray]:
    from longteng.focus import FocusSpec, OrientedBox, decode_for_focus, focus_crop, parse_quad
    from longteng.preprocess import PreprocessSpec
    from longteng.training.focus_data import jittered

    spec, pad = FocusSpec(), PreprocessSpec().pad_color
    crops = []
    for i, record in enumerate(records):
        photo = decode_for_focus(root / record.path, spec)
        box = jittered(OrientedBox.from_quad(parse_quad(record.extra["quad"], photo.image.size)), np.random.default_rng(i))
        crops.append(focus_crop(photo.image, box, spec, pad))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a synthesized dataset (it has boxes and tells)")
    parser.add_argument("--sides", default="736,512,384")
    parser.add_argument("--references", type=int, default=60, help="genuine photos per product the registry learns from")
    parser.add_argument("--genuine", type=int, default=100, help="further genuine photos per product: the false alarms")
    parser.add_argument("--counterfeits", type=int, default=300)
    args = parser.parse_args()
    from longteng.data.layout import scan_dataset
    from longteng.inference.text_check import TextRegistry, read_text

    records = [r for r in scan_dataset(args.data) if r.split == "train"]
    products = sorted({r.product for r in records})
    references = {p: [r for r in records if r.product == p and not r.is_counterfeit][: args.references] for p in products}
    genuine = [r for p in products for r in [r for r in records if r.product == p and not r.is_counterfeit][args.references :][: args.genuine]]
    counterfeits = [r for r in records if r.is_counterfeit][: args.counterfeits]
    chosen = [r for p in products for r in references[p]] + genuine + counterfeits
    crops = dict(zip((r.path for r in chosen), crops_of(args.data, chosen)))
    tells = sorted({t for r in counterfeits for t in r.tells()})

    rows = []
    for side in (int(s) for s in args.sides.split(",")):
        read_text(crops[chosen[0].path], 1, side)  # load the engine
        started = time.perf_counter()
        reads = {path: read_text(crop, 1, side) for path, crop in crops.items()}
        ms = 1000 * (time.perf_counter() - started) / len(crops)
        registry = TextRegistry.learn({p: [reads[r.path] for r in refs] for p, refs in references.items()}, detection_side=side)
        false_alarms = sum(registry.check(r.product, reads[r.path]) is not None for r in genuine)
        caught = {r.path for r in counterfeits if registry.check(r.product, reads[r.path]) is not None}
        per_tell = {t: float(np.mean([r.path in caught for r in counterfeits if t in r.tells()])) for t in tells}
        rows.append({"detection_side": side, "ms_per_crop": ms, "false_alarms": false_alarms, "n_genuine": len(genuine),
                     "recall": len(caught) / len(counterfeits), "n_counterfeit": len(counterfeits), "per_tell": per_tell,
                     "registry": registry.products})
        print(f"| {side} | {ms:.0f} ms | {false_alarms}/{len(genuine)} | {len(caught) / len(counterfeits):.3f} | "
              + ", ".join(f"{t} {v:.2f}" for t, v in per_tell.items()) + " |", flush=True)
    out = ROOT / "bench/results/ocr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": str(args.data), "crops": len(crops), "rows": rows}, indent=1))
    base = rows[0]["ms_per_crop"]
    print("time relative to the first side: " + ", ".join(f"{r['detection_side']}: {r['ms_per_crop'] / base:.2f}" for r in rows))
    print(f"(json: {out})")


if __name__ == "__main__":
    main()
