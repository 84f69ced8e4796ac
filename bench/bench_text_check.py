"""The text check (inference/text_check.py) on the quality benchmark's data: what it adds to the
supervised score, per tell, on a seed the registry and the model never saw.

Not a test. Needs `bench/quality_bar.py --scenarios medium-1600` to have run (its datasets and
its exported model). The registry is learnt from N genuine training photos per product (seed 1);
the check runs on the test seed (2). Reports the text check's own false-alarm rate on genuine
photos and recall per tell, and the recall at FA <= 0.02 of the supervised score alone and fused
(the runtime's own fusion, text_check.apply_text_check: a mismatch multiplies the counterfeit
score s to 1 - (1 - s)(1 - q), q the registry's mismatch probability; and, for comparison, a
mismatch setting the score to 1).
``--genuine-data`` counts the text check's false alarms on further genuine photos (e.g. the
training seed's, beyond the references): the bound on P(mismatch | genuine) behind the ratio.

    .venv/bin/python bench/bench_text_check.py [--references 60] [--test 1000] [--reads CACHE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench/results/quality_bar"


def recall_at(scores: np.ndarray, counterfeit: np.ndarray, far: float = 0.02) -> tuple[float, float]:
    """(recall, false-alarm rate) at the best threshold with at most ``far`` false alarms."""
    from longteng.training.metrics import best_threshold_at_false_alarm_rate

    best = best_threshold_at_false_alarm_rate(scores, counterfeit, far)
    return best.recall, best.false_alarm_rate


def model_without(model_path: Path, key: str, name: str) -> Path:
    """The model without one detector: a copy with the metadata entry ``key`` dropped (the model
    itself when it has none), named after ``name``."""
    import onnx

    graph = onnx.load(str(model_path))
    props = {prop.key: prop.value for prop in graph.metadata_props}
    if key not in props:
        return model_path
    del props[key]
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, props)
    copy = ROOT / "bench/results" / f"{model_path.parent.name}-{name}.onnx"
    onnx.save(graph, str(copy))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="medium-1600")
    parser.add_argument("--references", type=int, default=60, help="genuine training photos per product")
    parser.add_argument("--genuine-data", type=Path, default=None, help="count false alarms on this dataset's genuine photos too")
    parser.add_argument("--genuine-limit", type=int, default=1500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--test-data", type=Path, default=None,
                        help="test on this dataset instead of the benchmark's test seed (e.g. a seed the rules were not written on)")
    parser.add_argument("--reads", type=Path, default=None,
                        help="cache of OCR reads (JSON): written on the first run, reused after (to study the rules, not OCR)")
    args = parser.parse_args()
    from longteng.data.layout import scan_dataset
    from longteng.decision import is_counterfeit_class
    from longteng.inference.predict import Predictor
    from longteng.inference.text_check import TextRegistry, apply_text_check, read_text
    from longteng.inference.two_stage import focus_inputs, prepare_photo

    cache: dict[str, list] = json.loads(args.reads.read_text()) if args.reads and args.reads.exists() else {}

    def reads_of(key: str, crop) -> list:
        from longteng.inference.text_check import TextRead

        if key not in cache:
            cache[key] = [[r.text, r.confidence, [list(p) for p in r.box]] for r in read_text(crop)]
        return [TextRead(t, c, tuple(tuple(p) for p in b)) for t, c, b in cache[key]]

    model_path = WORK / f"{args.scenario}-run/model.onnx"
    predictor = Predictor(model_without(model_path, "longteng.text_registry", "supervised-only"))
    metadata = predictor.metadata

    def crops_and_predictions(root: Path, records):
        paths = [root / r.path for r in records]
        out = []
        for start in range(0, len(paths), 16):
            chunk = paths[start : start + 16]
            prepared = [prepare_photo(p, metadata, 100_000_000) for p in chunk]
            crops, views = focus_inputs(predictor.model, prepared)
            predictions = predictor.predict_pixels(chunk, crops, views)
            out.extend(zip(crops, predictions))
        return out

    started = time.perf_counter()
    train_root = WORK / f"{args.scenario}-train"
    train = [r for r in scan_dataset(train_root) if r.split == "train" and r.authenticity == "genuine"]
    references, references_records = {}, {}
    for product in sorted({r.product for r in train}):
        chosen = references_records[product] = [r for r in train if r.product == product][: args.references]
        references[product] = [reads_of(f"train/{r.path}", crop) for r, (crop, _) in zip(chosen, crops_and_predictions(train_root, chosen))]
    registry = TextRegistry.learn(references)
    build_seconds = time.perf_counter() - started

    test_root = args.test_data or WORK / f"{args.scenario}-test"
    test = scan_dataset(test_root)[: args.test]
    started = time.perf_counter()
    rows, probabilities, photo_reads = [], [], []
    for record, (crop, prediction) in zip(test, crops_and_predictions(test_root, test)):
        reads = reads_of(f"{test_root.name}/{record.path}", crop)
        mismatch = registry.check(prediction.decision.product, reads)
        rows.append((record, prediction.decision.counterfeit_score, mismatch))
        probabilities.append(prediction.probabilities)
        photo_reads.append(reads)
    check_seconds = time.perf_counter() - started
    counterfeit = np.array([r.authenticity == "counterfeit" for r, _, _ in rows])
    supervised = np.array([s for _, s, _ in rows])
    flagged = np.array([m is not None for _, _, m in rows])
    fused_probabilities, _ = apply_text_check(registry, photo_reads, np.array(probabilities), metadata.class_names)
    from longteng.decision import counterfeit_score

    fused = counterfeit_score(fused_probabilities, metadata.class_names)
    # Fixed in advance, not tuned on these photos: a mismatch sets the score to 1.
    score_one = np.where(flagged, 1.0, supervised)
    extra = {}
    if args.genuine_data:
        referenced = {f"train/{r.path}" for records in references_records.values() for r in records}
        genuine = [r for r in scan_dataset(args.genuine_data) if r.authenticity == "genuine"
                   and f"{args.genuine_data.name}/{r.path}" not in referenced and f"train/{r.path}" not in referenced][: args.genuine_limit]
        hits = []
        for record, (crop, prediction) in zip(genuine, crops_and_predictions(args.genuine_data, genuine)):
            mismatch = registry.check(prediction.decision.product, reads_of(f"{args.genuine_data.name}/{record.path}", crop))
            if mismatch is not None:
                hits.append((record.path, mismatch.read, mismatch.expected, round(mismatch.confidence, 3)))
        extra = {"genuine_data": str(args.genuine_data), "genuine_photos": len(genuine), "genuine_flagged": len(hits), "hits": hits[:20]}
    result = {
        "registry": registry.products, "reference_photos": sum(len(v) for v in references.values()),
        "build_seconds": build_seconds, "check_seconds_per_photo": check_seconds / len(rows), "test_photos": len(rows),
        "text_false_alarm_rate": float(flagged[~counterfeit].mean()), "text_recall": float(flagged[counterfeit].mean()),
        "supervised_recall_at_far_0.02": recall_at(supervised, counterfeit)[0],
        "mismatch_probability": registry.mismatch_probability,
        "fused_recall_at_far_0.02": recall_at(fused, counterfeit)[0], "fused_far": recall_at(fused, counterfeit)[1],
        "max_recall_at_far_0.02": recall_at(score_one, counterfeit)[0],
        **extra,
        "per_tell": {},
        "false_alarms": [(r.path, m.read, m.expected, round(m.confidence, 3)) for r, _, m in rows if m is not None and r.authenticity == "genuine"][:20],
        "caught": [(r.path, m.read, m.expected, round(m.confidence, 3)) for r, _, m in rows if m is not None and r.authenticity == "counterfeit"][:30],
    }
    tells = sorted({t for r, _, _ in rows for t in r.tells()})
    for tell in tells:
        index = np.array([tell in r.tells() and r.authenticity == "counterfeit" for r, _, _ in rows])
        if index.any():
            genuine = ~counterfeit
            mask = index | genuine
            result["per_tell"][tell] = {
                "n": int(index.sum()), "text_recall": float(flagged[index].mean()),
                "supervised_at_far_0.02": recall_at(supervised[mask], counterfeit[mask])[0],
                "fused_at_far_0.02": recall_at(fused[mask], counterfeit[mask])[0],
                "max_at_far_0.02": recall_at(score_one[mask], counterfeit[mask])[0],
            }
    if args.reads:
        args.reads.write_text(json.dumps(cache))
    out = ROOT / "bench/results" / f"text_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"registry from {result['reference_photos']} genuine photos in {build_seconds:.0f} s; "
          f"OCR {1000 * result['check_seconds_per_photo']:.0f} ms/photo")
    print(f"text check alone: false alarms {result['text_false_alarm_rate']:.3f} of genuine, recall {result['text_recall']:.3f}")
    print(f"recall at FA <= 0.02: supervised {result['supervised_recall_at_far_0.02']:.3f}, "
          f"fused (mismatch probability {registry.mismatch_probability:g}) {result['fused_recall_at_far_0.02']:.3f}, "
          f"a mismatch sets the score to 1 {result['max_recall_at_far_0.02']:.3f}")
    if extra:
        print(f"text check on {extra['genuine_photos']} more genuine photos ({extra['genuine_data']}): {extra['genuine_flagged']} flagged")
    print("| tell | n | text recall | supervised @2% | fused @2% | score 1 @2% |\n|---|---|---|---|---|---|")
    for tell, r in result["per_tell"].items():
        print(f"| {tell} | {r['n']} | {r['text_recall']:.2f} | {r['supervised_at_far_0.02']:.2f} | "
              f"{r['fused_at_far_0.02']:.2f} | {r['max_at_far_0.02']:.2f} |")
    print(json.dumps(result["registry"], indent=1)[:1500])
    print("false alarms:", result["false_alarms"][:10])
    print(f"(json: {out})")


if __name__ == "__main__":
    main()
