"""Does the classifier learn a tell, or the seizure cases that carry it? Per tell, the recall of
counterfeits that carry that tell alone, at the 2% false-alarm threshold of the same photos'
genuine ones, on three sets: the training split's own cases, the training seed's held-out cases
(its val and test splits: the same generator settings, cases never trained on) and a test seed.
The classifier alone (the exported model's calibrated counterfeit mass, no checks), through the
runtime's decode, glance and crop. Not a test.

    .venv/bin/python bench/single_tell_fit.py --model bench/results/quality_bar/medium-1600-run/model.onnx \\
        --train bench/results/quality_bar/medium-1600-train --test bench/results/quality_bar/medium-1600-test

A tell caught on the training cases but not on held-out ones is memorised case by case: its
counterfeits were too few (a handful of cases per product) for the network to learn it.
``--scores``: a `longteng score` CSV of the test seed (the shipped path, every check fused): how
many of the counterfeits it misses at FA 0.02 carry one tell and how many several.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from longteng.data.layout import scan_dataset
from longteng.decision import calibrate_scores, counterfeit_score
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.inference.two_stage import outputs_for_paths
from longteng.training.metrics import best_threshold_at_false_alarm_rate

FAR = 0.02


def tells_of(record) -> list[str]:
    text = record.extra.get("tells") or ""
    return [part.split(":")[0] for part in text.split(";") if part]


def scores_of(model: OnnxModel, root: Path, records) -> tuple[list, np.ndarray]:
    result = outputs_for_paths(model, [root / r.path for r in records], ("probabilities",))
    metadata = model.metadata
    probabilities = calibrate_scores(result.outputs["probabilities"], metadata.score_calibration, metadata.class_names)
    return [records[k] for k in result.kept], counterfeit_score(probabilities, metadata.class_names)


def per_tell(records, scores: np.ndarray) -> dict:
    counterfeit = np.array([r.authenticity == "counterfeit" for r in records])
    threshold = best_threshold_at_false_alarm_rate(scores, counterfeit, FAR).threshold
    caught: dict[str, list[bool]] = defaultdict(list)
    cases: dict[str, set[str]] = defaultdict(set)
    for record, score in zip(records, scores):
        tells = tells_of(record)
        if record.authenticity == "counterfeit":
            key = tells[0] if len(tells) == 1 else "(several tells)"
            caught[key].append(bool(score >= threshold))
            cases[key].add(record.case_id)
    return {
        "genuine": int((~counterfeit).sum()), "threshold": float(threshold),
        "per_tell": {tell: {"photos": len(v), "cases": len(cases[tell]), "recall": float(np.mean(v))} for tell, v in sorted(caught.items())},
    }


def shipped_misses(scores_csv: Path, root: Path) -> dict:
    from paired_scores import read_scores  # bench/, beside this script

    by_path = read_scores(scores_csv, root)
    records = [r for r in scan_dataset(root) if r.path in by_path]
    scores = np.array([by_path[r.path] for r in records])
    counterfeit = np.array([r.authenticity == "counterfeit" for r in records])
    threshold = best_threshold_at_false_alarm_rate(scores, counterfeit, FAR).threshold
    out = {}
    for label, wanted in (("one tell", lambda n: n == 1), ("several tells", lambda n: n > 1)):
        rows = [k for k, r in enumerate(records) if counterfeit[k] and wanted(len(tells_of(r)))]
        out[label] = {"counterfeits": len(rows), "missed": int((scores[rows] < threshold).sum())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True, help="the dataset the model was trained on (manifest with splits)")
    parser.add_argument("--test", type=Path, required=True, help="a dataset of another seed")
    parser.add_argument("--genuine-every", type=int, default=4, help="score every Nth genuine photo of the training split")
    parser.add_argument("--scores", type=Path, help="a `longteng score` CSV of the test seed")
    parser.add_argument("--out", type=Path, default=Path("bench/results/single_tell_fit.json"))
    args = parser.parse_args()

    result = {"model": str(args.model), "train": str(args.train), "test": str(args.test), "sets": {}}
    if args.scores is not None:
        result["shipped_misses"] = shipped_misses(args.scores, args.test)
        print("the shipped path's misses at FA 0.02 on the test seed:", json.dumps(result["shipped_misses"]))
    model = OnnxModel(args.model, RuntimeOptions(device="cpu"))
    train_records = scan_dataset(args.train)
    trained_on = [r for r in train_records if r.split == "train"]
    sets = {
        "training cases": (args.train, [r for r in trained_on if r.authenticity == "genuine"][:: args.genuine_every]
                           + [r for r in trained_on if r.authenticity == "counterfeit" and len(tells_of(r)) == 1]),
        "held-out cases, training seed": (args.train, [r for r in train_records if r.split in ("val", "test")]),
        "test seed": (args.test, scan_dataset(args.test)),
    }
    for name, (root, records) in sets.items():
        kept, scores = scores_of(model, root, records)
        result["sets"][name] = per_tell(kept, scores)
    tells = sorted({t for entry in result["sets"].values() for t in entry["per_tell"]})
    print(f"{'counterfeits with one tell':28s}" + "".join(f"{name:>34s}" for name in result["sets"]))
    for tell in tells:
        cells = []
        for entry in result["sets"].values():
            found = entry["per_tell"].get(tell)
            cells.append("-" if found is None else f"{found['recall']:.2f} ({found['photos']} photos, {found['cases']} cases)")
        print(f"{tell:28s}" + "".join(f"{c:>34s}" for c in cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
