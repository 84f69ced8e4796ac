"""Opened boxes: does the model find every item of a photo, count them, and catch the fake?

Not a test. Runs every photo of a dataset with an items column (`longteng data synth ...
--items-per-photo 1-6`, a seed the model never saw) through the runtime (`Predictor.predict`:
decode, glance, one crop per item found, focus, the verdict of the most suspicious item) and
compares with the manifest:

* **detection**: recall of the true items at IoU >= 0.5 (one-to-one greedy matching per photo),
  false items per photo, share of photos whose item count is exact (bars: 0.95, <= 0.05, 0.90);
* **per item**: counterfeit recall at FA <= 0.02 over the items found and matched, with each
  item's own label, against the single-item benchmark (bar: within 0.05 of it);
* **one fake among at least five genuine items**: share of those photos whose verdict is
  COUNTERFEIT or REFER (bar: 0.95);
* **speed**: photos per second and items per second of the whole run, one process.

    .venv/bin/python bench/bench_items.py --model RUN/model.onnx --data TEST

Results go to bench/results/items.json as well.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    args = parser.parse_args()
    from longteng.data.layout import parse_tells, scan_dataset
    from longteng.decision import COUNTERFEIT, REFER
    from longteng.focus import parse_item_quads
    from longteng.inference.predict import PhotoFailure, Predictor
    from longteng.training.detectors import detector_report
    from longteng.training.two_stage_trainer import match_items

    records = [r for r in scan_dataset(args.data) if r.extra.get("items")]
    if args.limit:
        records = records[: args.limit]
    if not records:
        raise SystemExit(f"{args.data}: no photos with an items column (data synth --items-per-photo)")
    predictor = Predictor(args.model)
    if not predictor.metadata.finds_items:
        raise SystemExit(f"{args.model}: this model finds one product per photo (train it on a dataset with an items column)")
    started = time.perf_counter()
    predictions = list(predictor.predict([args.data / r.path for r in records]))
    seconds = time.perf_counter() - started

    matched = true_items = false_items = exact = 0
    item_scores, item_fake, item_tells = [], [], []
    one_fake, one_fake_caught = 0, 0
    for record, prediction in zip(records, predictions):
        if isinstance(prediction, PhotoFailure):
            raise SystemExit(f"{record.path}: {prediction.detail}")
        truth = json.loads(record.extra["items"])
        size = prediction.view.original_size
        quads = parse_item_quads(record.extra["items"], size)
        found = prediction.items
        used_true = match_items(quads, [item.view.box_in_original for item in found])
        matched += len(used_true)
        true_items += len(quads)
        false_items += len(found) - len(used_true)
        exact += len(found) == len(quads)
        for i, j in used_true.items():
            item_scores.append(found[j].decision.counterfeit_score)
            item_fake.append(truth[i]["authenticity"] == "counterfeit")
            item_tells.append(parse_tells(truth[i]["tells"]))
        fakes = sum(t["authenticity"] == "counterfeit" for t in truth)
        if fakes == 1 and len(truth) - fakes >= 5:
            one_fake += 1
            one_fake_caught += prediction.decision.verdict in (COUNTERFEIT, REFER)

    per_item = detector_report({"per_item": np.array(item_scores)}, np.array(item_fake), item_tells)["detectors"]["per_item"]
    result = {
        "model": str(args.model), "data": str(args.data), "photos": len(records), "true_items": true_items,
        "recall_at_iou_0.5": matched / true_items, "false_items_per_photo": false_items / len(records),
        "count_exact": exact / len(records),
        "per_item_recall_at_far_0.02": per_item["recall"], "per_item_far": per_item["false_alarm_rate"],
        "per_item_by_tell": per_item["per_tell"], "matched_items": len(item_scores), "matched_counterfeit_items": int(sum(item_fake)),
        "one_fake_among_five_or_more": one_fake, "one_fake_caught_or_referred": (one_fake_caught / one_fake) if one_fake else None,
        "photos_per_second": len(records) / seconds, "items_found_per_second": sum(len(p.items) for p in predictions) / seconds,
    }
    out = ROOT / "bench/results/items.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"| photos | items | recall at IoU 0.5 (bar 0.95) | false items per photo (bar 0.05) | count exact (bar 0.90) |"
          f" per-item recall at FA <= 0.02 | one fake among >= 5 genuine: COUNTERFEIT or REFER (bar 0.95) | photos/s | items/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    caught = "-" if result["one_fake_caught_or_referred"] is None else f"{result['one_fake_caught_or_referred']:.3f} of {one_fake}"
    print(f"| {len(records)} | {true_items} | {result['recall_at_iou_0.5']:.3f} | {result['false_items_per_photo']:.3f} | "
          f"{result['count_exact']:.3f} | {per_item['recall']:.3f} | {caught} | {result['photos_per_second']:.2f} | "
          f"{result['items_found_per_second']:.2f} |")
    print(f"(json: {out})")


if __name__ == "__main__":
    main()
