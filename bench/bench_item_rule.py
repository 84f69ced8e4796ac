"""How the glance's map becomes items: the core share and the smallest item share, swept.

Not a test. Runs the exported model's glance once on one split of a dataset with an items
column and applies `longteng.focus.boxes_from_maps` at each setting of its two constants
(`_ITEM_CORE`: a region's core is its cells at least this share of the map's surest;
`_MIN_ITEM_SHARE`: a region under this share of the largest is not an item), reporting item
recall at IoU 0.5, false items per photo and exact counts. Tune on a validation split, quote
the test seed from bench/bench_items.py.

    .venv/bin/python bench/bench_item_rule.py --model RUN/model.onnx --data TRAIN --split val
        [--cores 0.5,0.65,0.8,0.9] [--shares 0,0.15,0.25,0.35]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--cores", default="0.5,0.65,0.8,0.9")
    parser.add_argument("--shares", default="0,0.15,0.25,0.35")
    args = parser.parse_args()
    import longteng.focus as focus
    from longteng.data.layout import scan_dataset
    from longteng.inference.session import OnnxModel
    from longteng.inference.two_stage import prepare_photo
    from longteng.training.two_stage_trainer import item_detection_summary

    model = OnnxModel(args.model)
    records = [r for r in scan_dataset(args.data) if r.split == args.split and r.extra.get("items")]
    photos = [prepare_photo(args.data / r.path, model.metadata) for r in records]
    maps = [model.run_glance(np.stack([p.glance for p in photos[i : i + 16]])) for i in range(0, len(photos), 16)]
    objectness, up = np.concatenate([m[0] for m in maps]), np.concatenate([m[1] for m in maps])
    truths = [tuple(focus.parse_item_quads(r.extra["items"], p.photo.image.size)) for r, p in zip(records, photos)]
    size = model.metadata.preprocess.input_size
    print(f"{len(records)} photos of {args.data} ({args.split}), glance map {objectness.shape[1:]}; "
          f"the model's rule: core {focus._ITEM_CORE}, smallest item share {focus._MIN_ITEM_SHARE}")
    print("| core | smallest share | recall at IoU 0.5 | false items per photo | count exact |\n|---|---|---|---|---|")
    for core in (float(v) for v in args.cores.split(",")):
        for share in (float(v) for v in args.shares.split(",")):
            focus._ITEM_CORE, focus._MIN_ITEM_SHARE = core, share
            found = [
                focus.boxes_from_maps(objectness[i], up[i], focus.GlanceFrame.of(p.photo.image.size, model.metadata.preprocess),
                                      size, model.metadata.focus.max_items)
                for i, p in enumerate(photos)
            ]
            summary = item_detection_summary(truths, found)
            print(f"| {core} | {share} | {summary['recall_at_iou_0.5']:.3f} | {summary['false_items_per_photo']:.3f} | "
                  f"{summary['count_exact']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
