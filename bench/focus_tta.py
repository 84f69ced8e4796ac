"""Does looking at the product through several nearby boxes help the focus stage decide?

Not a test. The glance's box misses the generator's by a few percent (IoU median about 0.87), and
a perfect box lifted recall at FA <= 0.02 by about 0.09 in bench/focus_diagnostics.py. This probe
runs the exported model's own path (decode, glance, box) on photos of a seed the model never saw,
then scores the focus stage on crops at

- the glance's box (what the runtime does),
- the generator's box (a perfect glance),
- the glance's box and K perturbations of it (shifts, scale, turn, of the size the trainer
  jitters its training crops by), the logits averaged (test-time augmentation).

and reports ROC-AUC and recall at FA <= 0.02 of the classifier's counterfeit score (no text or
aligned check: what the crop itself changes), overall and per tell, and the focus stage's cost.

    .venv/bin/python bench/focus_tta.py --model RUN/model.onnx --test /tmp/dev/test [--limit 500]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from longteng.data.layout import scan_dataset
from longteng.decision import counterfeit_score, softmax
from longteng.focus import OrientedBox, focus_crop, parse_quad
from longteng.inference.session import OnnxModel
from longteng.inference.two_stage import locate, prepare_photo
from longteng.training.focus_data import JITTER
from longteng.training.metrics import recall_at_false_alarm_rate, roc_auc

ROOT = Path(__file__).resolve().parent.parent
SHIFT, GROW, TURN = JITTER  # the trainer's: centre shift (share of the longer side), size, turn


def perturbations(box: OrientedBox, count: int) -> list[OrientedBox]:
    """The box itself first, then up to 8 neighbours: 4 shifts, 2 sizes, 2 turns."""
    longer = max(box.length, box.width)
    step = SHIFT * longer
    neighbours = [
        OrientedBox(box.cx + dx, box.cy + dy, box.length, box.width, box.angle)
        for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step))
    ] + [
        OrientedBox(box.cx, box.cy, box.length * g, box.width * g, box.angle) for g in (math.exp(GROW), math.exp(-GROW))
    ] + [
        OrientedBox(box.cx, box.cy, box.length, box.width, box.angle + t) for t in (TURN, -TURN)
    ]
    return [box] + neighbours[: count - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported two-stage model (RUN/model.onnx)")
    parser.add_argument("--test", type=Path, required=True, help="a synthesized dataset of a seed the model never saw")
    parser.add_argument("--limit", type=int, default=0, help="the first N photos only (0: all)")
    parser.add_argument("--counts", default="5,9", help="numbers of boxes averaged")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/focus_tta.json")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    model = OnnxModel(args.model)
    metadata = model.metadata
    classes = metadata.class_names
    records = scan_dataset(args.test)
    if args.limit:
        records = records[: args.limit]

    logits: dict[str, list[np.ndarray]] = {"glance": [], "generator": [], **{f"tta{c}": [] for c in counts}}
    seconds = {name: 0.0 for name in logits}
    positive, tells = [], []
    for record in records:
        prepared = prepare_photo(args.test / record.path, metadata)
        box = locate(model, [prepared])[0]
        truth = OrientedBox.from_quad(parse_quad(record.extra["quad"], prepared.photo.image.size))
        boxes = perturbations(box, max(counts)) if box is not None else [None]
        crops = np.stack([focus_crop(prepared.photo.image, b, metadata.focus, metadata.preprocess.pad_color) for b in boxes])
        started = time.perf_counter()
        out = model.run(crops[:1], ("logits",))["logits"]
        seconds["glance"] += time.perf_counter() - started
        logits["glance"].append(out[0])
        generator = focus_crop(prepared.photo.image, truth, metadata.focus, metadata.preprocess.pad_color)
        logits["generator"].append(model.run(generator[None], ("logits",))["logits"][0])
        for c in counts:
            started = time.perf_counter()
            out = model.run(crops[:c], ("logits",))["logits"]
            seconds[f"tta{c}"] += time.perf_counter() - started
            logits[f"tta{c}"].append(out.mean(0))
        positive.append(record.is_counterfeit)
        tells.append(list(record.tells()))

    positive_array = np.array(positive)
    results = {}
    for name, rows in logits.items():
        scores = counterfeit_score(softmax(np.stack(rows)), classes)
        per_tell = {}
        for tell in sorted({t for ts in tells for t in ts}):
            mask = np.array([(not p) or (tell in ts) for p, ts in zip(positive, tells)])
            per_tell[tell] = round(recall_at_false_alarm_rate(scores[mask], positive_array[mask], 0.02), 3)
        results[name] = {
            "roc_auc": round(roc_auc(scores, positive_array), 4),
            "recall_at_fa_0.02": round(recall_at_false_alarm_rate(scores, positive_array, 0.02), 4),
            "focus_ms_per_photo": round(1000 * seconds[name] / len(records), 1) if seconds[name] else None,
            "per_tell": per_tell,
        }
        print(f"{name:10s} ROC-AUC {results[name]['roc_auc']:.3f}  recall@FA0.02 {results[name]['recall_at_fa_0.02']:.3f}  "
              f"focus {results[name]['focus_ms_per_photo']} ms  {per_tell}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "test": str(args.test), "photos": len(records), **results}, indent=2))


if __name__ == "__main__":
    main()
