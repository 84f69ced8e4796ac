"""How honest is the confidence an officer reads? Calibration methods fitted on a model's
validation photos, measured on another seed.

The officer's confidence is the calibrated counterfeit probability s (COUNTERFEIT), or 1 - s
(GENUINE), or the likelier side (REFER): longteng.decision.verdict_confidence. So the number
that must be calibrated is s. Compared, all fitted on the validation split of the model's own
training data and all measured on every photo of a dataset of another seed, through the
exported model (the runtime's decode, glance, crop and focus):

  shipped      softmax(logits / T), T fitted on validation by NLL (what the model ships)
  raw          softmax(logits)
  platt        a logistic fit of the counterfeit/genuine log-odds on validation on top of T:
               s' = sigmoid(a * logit(s) + b), by NLL (2 parameters): what training now
               ships (longteng.training.calibration.fit_score_calibration)
  bcts         bias-corrected temperature scaling (Alexandari et al. 2020), restricted to one
               bias: softmax((logits + c * [class is counterfeit]) / T), (T, c) by NLL
               over all classes (2 parameters; stays a softmax over the same classes)

Reported: ECE of s (15 bins), ECE of the verdict confidence max(s, 1 - s) against "the likelier
side is right", and the top-class ECE over all classes that the quality report calls ECE.

    python bench/calibration_variants.py --model RUN/model.onnx --val-data TRAIN_DATA --test TEST_DATA
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from longteng.decision import calibrate_scores, counterfeit_score, is_counterfeit_class, softmax
from longteng.training.calibration import fit_score_calibration, fit_temperature, negative_log_likelihood
from longteng.training.evaluate import evaluate_model
from longteng.training.metrics import expected_calibration_error


def fit_bcts(logits: np.ndarray, labels: np.ndarray, counterfeit_class: np.ndarray) -> tuple[float, float]:
    """(T, c): for each bias c on a grid, the NLL-optimal T; then a finer grid around the best c."""
    def best_for(bias: float) -> tuple[float, float]:
        shifted = logits + bias * counterfeit_class
        temperature = fit_temperature(shifted, labels)
        return negative_log_likelihood(shifted, labels, temperature), temperature

    grid = np.linspace(-3, 3, 61)
    for _ in range(3):
        values = [best_for(float(c)) for c in grid]
        k = int(np.argmin([v[0] for v in values]))
        best_c, (_, best_t) = float(grid[k]), values[k]
        step = grid[1] - grid[0]
        grid = np.linspace(best_c - step, best_c + step, 21)
    return best_t, best_c


def measures(scores: np.ndarray, positive: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    likelier_right = np.where(scores >= 0.5, positive, ~positive)
    return {
        "ece_counterfeit_score": expected_calibration_error(scores, positive).ece,
        "ece_verdict_confidence": expected_calibration_error(np.maximum(scores, 1 - scores), likelier_right).ece,
        "ece_top_class": expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels).ece,
        "nll_counterfeit": float(-np.mean(np.where(positive, np.log(np.clip(scores, 1e-12, 1)), np.log(np.clip(1 - scores, 1e-12, 1))))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported two-stage model (.onnx)")
    parser.add_argument("--val-data", type=Path, required=True, help="the model's training dataset (its val split)")
    parser.add_argument("--test", type=Path, required=True, help="a dataset of another seed (all of it)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    cache = args.out.with_suffix(".npz") if args.out else None
    if cache is not None and cache.exists():
        stored = np.load(cache, allow_pickle=False)
        classes, temperature = [str(c) for c in stored["classes"]], float(stored["temperature"])
        outputs = {s: (stored[f"{s}_probabilities"], stored[f"{s}_labels"]) for s in ("val", "test")}
    else:
        runs = {"val": evaluate_model(args.model, args.val_data, "val"), "test": evaluate_model(args.model, args.test, "all")}
        classes, temperature = runs["val"].class_names, runs["val"].report["temperature"]
        outputs = {s: (run.probabilities, run.labels) for s, run in runs.items()}
        if cache is not None:
            np.savez(cache, classes=np.array(classes), temperature=temperature,
                     **{f"{s}_{k}": v for s, (p, l) in outputs.items() for k, v in (("probabilities", p), ("labels", l))})
    counterfeit_class = np.array([is_counterfeit_class(c) for c in classes])
    per_split = {}
    for name, (probabilities, labels) in outputs.items():
        # evaluate_model applied T; undo it to get the logits back (up to a constant per row).
        logits = np.log(np.clip(probabilities, 1e-30, 1)) * temperature
        per_split[name] = {
            "positive": counterfeit_class[labels], "labels": labels, "logits": logits,
            "shipped": probabilities, "raw": softmax(logits),
        }
    val, test = per_split["val"], per_split["test"]
    platt = fit_score_calibration(counterfeit_score(val["shipped"], classes), val["positive"])
    a, b = platt.slope, platt.bias
    bcts_t, bcts_c = fit_bcts(val["logits"], val["labels"], counterfeit_class.astype(np.float64))
    test["bcts"] = softmax(test["logits"] + bcts_c * counterfeit_class, bcts_t)
    results = {"temperature": temperature, "platt": {"a": a, "b": b}, "bcts": {"temperature": bcts_t, "bias": bcts_c},
               "n_val": len(val["labels"]), "n_test": len(test["labels"])}
    for method in ("shipped", "raw", "platt", "bcts"):
        source = test[{"raw": "raw", "bcts": "bcts"}.get(method, "shipped")]
        scores = counterfeit_score(source, classes)
        probabilities = source
        if method == "platt":  # what longteng train now ships: the runtime's own function
            probabilities = calibrate_scores(source, platt, classes)
            scores = counterfeit_score(probabilities, classes)
        results[f"{method}_test"] = measures(scores, test["positive"], probabilities, test["labels"])
        print(method, json.dumps({k: round(v, 4) for k, v in results[f"{method}_test"].items()}), flush=True)
    print(f"T {temperature:.3f}; platt a {a:.3f} b {b:.3f}; bcts T {bcts_t:.3f} c {bcts_c:.3f} "
          f"(fitted on {results['n_val']} validation photos)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
