"""Register a product the network never saw from genuine photos alone, then judge its photos.

Issue 10's bars for a registered product: at least 95% of its photos get the right product,
and its counterfeits' recall at a false-alarm rate of at most 0.02 is at least 0.80. And the
registration must leave the trained products alone. Everything runs through the runtime
(`longteng reference add`'s functions, then the Predictor), no torch:

    longteng data synth /tmp/pb300 --images 300 --size 1600x1200 --seed 11 --products power_bank
    python bench/bench_register.py --model bench/results/quality_bar/medium-1600-run/model.onnx \
        --data /tmp/pb300 --references 50 --known bench/results/quality_bar/medium-1600-test --known-limit 300

References are the first N genuine photos of the dataset's train split; every other photo of
the dataset is judged. Recall at FA <= 0.02 uses the 98th percentile of the judged genuine
photos' scores (an oracle threshold: what the score can do); the shipped rule is reported
beside it, and so is the alternative the novelty score was chosen over, the network's own
counterfeit mass transferred from the trained products (COUNTERFEIT beyond every reference's novelty, REFER within, never GENUINE).
`product_by_nearest_mean_alone`: the products the nearest class mean alone would give (the rule
before the print could name the product). `detectors_alone`: each of the registered product's detectors on its own (the novelty score,
the aligned check, the text check), to tell which one a change of the model moved, and two
other fusions of the novelty and the aligned check (without the text check).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from longteng.data.layout import scan_dataset
from longteng.decision import COUNTERFEIT, calibrate_scores, counterfeit_score
from longteng.inference.model_file import write_with_metadata
from longteng.inference.predict import PhotoPrediction, PredictOptions, Predictor
from longteng.inference.registered import register_product, with_product
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.inference.two_stage import outputs_for_paths
from sklearn.metrics import roc_auc_score

FALSE_ALARMS = 0.02


def judged(predictor: Predictor, root: Path, records) -> list[tuple[object, PhotoPrediction]]:
    results = predictor.predict([root / r.path for r in records])
    return [(r, p) for r, p in zip(records, results) if isinstance(p, PhotoPrediction)]


def recall_at_false_alarms(scores: np.ndarray, counterfeit: np.ndarray) -> tuple[float, float]:
    threshold = float(np.quantile(scores[~counterfeit], 1 - FALSE_ALARMS))
    return float((scores[counterfeit] > threshold).mean()), threshold


def transferred_mass(runtime: OnnxModel, root: Path, records) -> dict[str, float]:
    """The alternative to the novelty score: the network's own counterfeit mass (the tells it
    learned on the trained products), per photo path."""
    result = outputs_for_paths(runtime, [root / r.path for r in records], ("probabilities",))
    metadata = runtime.metadata
    mass = counterfeit_score(calibrate_scores(result.outputs["probabilities"], metadata.score_calibration, metadata.class_names), metadata.class_names)
    return {records[k].path: float(m) for k, m in zip(result.kept, mass)}


def detector_scores(model_path: Path, root: Path, records, references, product: str) -> dict[str, dict[str, float]]:
    """Each of the registered product's detectors alone, per photo path: the novelty of the
    focus embedding against the references' spread, and the aligned check's log-odds against
    the references (-inf where it has no say: the crop did not register); and two other ways
    to fuse them: each standardised by its values on the references left out one at a time,
    then summed, or the larger taken. And ``nearest_mean``: 1 where the nearest class mean alone
    (the product rule without the print) says the photo is the registered product."""
    from longteng.inference.aligned_check import MIN_CORRELATION, aligned_scores, compare
    from longteng.inference.registered import assign, leave_one_out_novelties

    registered = OnnxModel(model_path, RuntimeOptions(device="cpu"))
    metadata = registered.metadata
    result = outputs_for_paths(registered, [root / r.path for r in records], ("embedding",), keep_crops=True)
    found = next(p for p in metadata.registered_products if p.name == product)
    novelty = found.novelty(result.outputs["embedding"])
    paths = [records[k].path for k in result.kept]
    scores = {"novelty": dict(zip(paths, map(float, novelty)))}
    index = [p.name for p in metadata.registered_products].index(product)
    nearest = assign(result.outputs["embedding"], metadata).product == index
    scores["nearest_mean"] = dict(zip(paths, map(float, nearest)))
    check = metadata.aligned_check
    if check is None or product not in check.products:
        return scores
    aligned, _ = aligned_scores(check, [product] * len(result.crops), np.stack(result.crops))
    scores["aligned"] = {path: float(a) if np.isfinite(a) else -np.inf for path, a in zip(paths, aligned)}
    own = outputs_for_paths(registered, [root / r.path for r in references], ("embedding",), keep_crops=True)
    embedding = np.asarray(own.outputs["embedding"], np.float64)
    left_out_novelty = np.log(leave_one_out_novelties(embedding))
    left_out_aligned = []
    for i, crop in enumerate(own.crops):
        comparison = compare(check.products[product], crop, check.neighbours, exclude=np.arange(len(own.crops)) == i)
        left_out_aligned.append(float(check.score(comparison.features)[0]) if comparison.correlation >= MIN_CORRELATION else np.nan)
    z_novelty = (np.log(novelty) - left_out_novelty.mean()) / left_out_novelty.std()
    z_aligned = np.nan_to_num((aligned - np.nanmean(left_out_aligned)) / np.nanstd(left_out_aligned), nan=0.0)
    scores["standardised_sum"] = dict(zip(paths, map(float, z_novelty + z_aligned)))
    scores["standardised_max"] = dict(zip(paths, map(float, np.maximum(z_novelty, z_aligned))))
    return scores


def registered_report(rows, product: str, mass: dict[str, float], detectors: dict[str, dict[str, float]]) -> dict:
    counterfeit = np.array([r.authenticity == "counterfeit" for r, _ in rows])
    scores = np.array([p.decision.counterfeit_score for _, p in rows])
    transferred = np.array([mass[r.path] for r, _ in rows])
    transferred_recall, _ = recall_at_false_alarms(transferred, counterfeit)
    right_product = np.array([p.decision.product == product for _, p in rows])
    recall, threshold = recall_at_false_alarms(scores, counterfeit)
    decided = np.array([p.decision.verdict == COUNTERFEIT for _, p in rows])
    text = np.array([p.text_mismatch is not None for _, p in rows])
    tells = sorted({t for r, _ in rows for t in r.tells()})
    per_tell = {}
    for tell in tells:
        carrying = np.array([tell in r.tells() for r, _ in rows])
        per_tell[tell] = {"photos": int(carrying.sum()), "recall_at_far_0.02": float((scores[carrying] > threshold).mean()),
                          "text_check": float(text[carrying].mean())}
    alone = {}
    nearest_mean = detectors.pop("nearest_mean")
    by_nearest_mean = np.array([nearest_mean[r.path] > 0 for r, _ in rows])
    for name, by_path in detectors.items():
        values = np.array([by_path.get(r.path, -np.inf) for r, _ in rows])
        finite = np.where(np.isfinite(values), values, np.nanmin(values[np.isfinite(values)]) - 1)
        alone[name] = {"roc_auc": float(roc_auc_score(counterfeit, finite)), "recall_at_far_0.02": recall_at_false_alarms(finite, counterfeit)[0],
                       "no_say": float(np.mean(~np.isfinite(values)))}
    alone["text_check"] = {"recall_at_far_0.02": float(text[counterfeit].mean()) if text[~counterfeit].mean() <= FALSE_ALARMS else float("nan")}
    return {
        "photos": len(rows), "product_accuracy": float(right_product.mean()),
        "detectors_alone": alone,
        "product_accuracy_genuine": float(right_product[~counterfeit].mean()),
        "product_accuracy_counterfeit": float(right_product[counterfeit].mean()),
        "product_by_nearest_mean_alone": {"accuracy": float(by_nearest_mean.mean()), "genuine": float(by_nearest_mean[~counterfeit].mean()),
                                          "counterfeit": float(by_nearest_mean[counterfeit].mean())},
        "recall_at_far_0.02": recall, "roc_auc": float(roc_auc_score(counterfeit, scores)),
        "transferred_mass": {"roc_auc": float(roc_auc_score(counterfeit, transferred)), "recall_at_far_0.02": transferred_recall},
        "shipped_rule": {"counterfeit_recall": float(decided[counterfeit].mean()), "false_alarms": float(decided[~counterfeit].mean())},
        "text_check": {"counterfeit_flagged": float(text[counterfeit].mean()), "genuine_flagged": float(text[~counterfeit].mean())},
        "per_tell": per_tell,
    }


def known_report(before, after) -> dict:
    same_verdict = np.mean([a.decision.verdict == b.decision.verdict for (_, a), (_, b) in zip(before, after)])
    right = np.mean([p.decision.product == r.product for r, p in after])
    stolen = np.mean([p.decision.product not in {r.product for r, _ in after} for _, p in after])
    return {"photos": len(after), "same_verdict_as_unregistered": float(same_verdict), "product_accuracy": float(right),
            "taken_for_a_registered_product": float(stolen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="photos of the new product (a synth dataset)")
    parser.add_argument("--product", default="power_bank")
    parser.add_argument("--references", type=int, default=50)
    parser.add_argument("--known", type=Path, help="a test set of the trained products: registration must not change it")
    parser.add_argument("--known-limit", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/register.json"))
    args = parser.parse_args()

    records = [r for r in scan_dataset(args.data) if r.product == args.product]
    references = [r for r in records if r.split == "train" and r.authenticity == "genuine"][: args.references]
    if len(references) < args.references:
        sys.exit(f"{args.data}: only {len(references)} genuine training photos of {args.product}")
    chosen = {r.path for r in references}
    test = [r for r in records if r.path not in chosen]

    started = time.perf_counter()
    runtime = OnnxModel(args.model, RuntimeOptions(device="cpu"))
    product, reads, failures, aligned_references, artwork_references = register_product(runtime, args.product, [args.data / r.path for r in references])
    registration_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as work:
        registered_path = write_with_metadata(args.model, Path(work) / "registered.onnx", with_product(runtime.metadata, product, reads, aligned_references, artwork_references))
        after = Predictor(registered_path, PredictOptions(device="cpu"))
        result = {
            "model": str(args.model), "data": str(args.data), "references": len(references), "failures": len(failures),
            "registration_seconds": registration_seconds, "novelty_threshold": product.novelty_threshold,
            "registered": registered_report(judged(after, args.data, test), args.product, transferred_mass(runtime, args.data, test),
                                            detector_scores(registered_path, args.data, test, references, args.product)),
        }
        if args.known is not None:
            known = scan_dataset(args.known)[: args.known_limit]
            before = Predictor(args.model, PredictOptions(device="cpu"))
            result["known"] = known_report(judged(before, args.known, known), judged(after, args.known, known))
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
