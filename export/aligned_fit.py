"""Fit the aligned comparison (inference/aligned_check.py) at export, with the model that ships.

1. **References**: genuine training photos of each product, cropped where the glance looks
   (the runtime's own path), registered onto their product's template.
2. **Weights**: the check's statistics on other training photos (genuine and counterfeit;
   references of the photo's own seizure case left out, as a photo in the field has none),
   then a logistic regression of them.
3. **Fusion**: on the validation photos (the classifier never trained on them), the score that
   2% of genuine ones reach becomes the knee, and a logistic regression with the classifier's
   log-odds as a fixed offset weighs the evidence above it; then the operating point is chosen
   again on the fused validation scores, with the targets the training chose it for.

Measured in README (Measured, the aligned comparison) with bench/aligned_probe.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longteng.data.layout import Record
from longteng.decision import OperatingPoint, calibrated_probabilities, counterfeit_score, stack_evidence
from longteng.errors import ConfigError
from longteng.inference.aligned_check import (
    DEFAULT_NEIGHBOURS, DEFAULT_SIZE, FEATURES, MIN_CORRELATION, AlignedCheck, ProductReferences, compare, shrink,
)
from longteng.inference.metadata import ModelMetadata
from longteng.inference.two_stage import PathOutputs, outputs_for_paths
from longteng.training.metrics import roc_auc
from longteng.training.operating_point import choose_operating_point
from longteng.training.progress import Reporter

# The share of genuine validation photos allowed above the score at which the check "fires".
_FIRE_RATE = 0.02
# Fewer validation photos of either kind than this, and the fusion's numbers are noise.
MIN_PER_CLASS = 20


def fit_aligned_check(
    model, metadata: ModelMetadata, references: Mapping[str, Sequence[Path]], record_of: Callable[[Path], Record],
    train: tuple[PathOutputs, list[Path]], val: tuple[PathOutputs, list[Path]], reporter: Reporter,
    size: int = DEFAULT_SIZE, neighbours: int = DEFAULT_NEIGHBOURS,
) -> tuple[AlignedCheck | None, OperatingPoint | None, dict[str, Any]]:
    """(check, operating point chosen on the stacked validation scores, summary); (None, None,
    reason) when the data cannot fit it (a product with fewer than two references, or a split
    without both kinds of photo)."""
    products: dict[str, ProductReferences] = {}
    reference_cases: dict[str, np.ndarray] = {}
    total = sum(len(paths) for paths in references.values())
    with reporter.task("register genuine references (aligned check)", total) as advance:
        for product, paths in references.items():
            found = outputs_for_paths(model, list(paths), ("logits",), keep_crops=True, progress=advance)
            if len(found.crops) < 2:
                return None, None, {"skipped": f"{product}: fewer than 2 genuine training photos decoded"}
            aspects = [v.box.width / v.box.length if v.box is not None else 1.0 for v in found.views]
            products[product] = ProductReferences.build(np.stack([shrink(c, size) for c in found.crops]), aspects)
            reference_cases[product] = np.array([record_of(paths[k]).case_id for k in found.kept])

    def features(split: tuple[PathOutputs, list[Path]], leave_out_case: bool) -> tuple[np.ndarray, np.ndarray]:
        outputs, paths = split
        rows, labels = [], []
        for crop, path in zip(outputs.crops, paths):
            record = record_of(path)
            bank = products.get(record.product)
            if bank is None:
                rows.append(np.full(len(FEATURES), np.nan))
            else:
                exclude = reference_cases[record.product] == record.case_id if leave_out_case else None
                comparison = compare(bank, crop, neighbours, exclude=exclude)
                rows.append(comparison.features if comparison.correlation >= MIN_CORRELATION else np.full(len(FEATURES), np.nan))
            labels.append(record.authenticity == "counterfeit")
        return np.array(rows).reshape(len(rows), len(FEATURES)), np.array(labels, dtype=bool)

    with reporter.task("learn the aligned check's weights", len(train[1]) + len(val[1])) as advance:
        train_x, train_y = features(train, leave_out_case=True)
        advance(len(train[1]))
        val_x, val_y = features(val, leave_out_case=False)
        advance(len(val[1]))
    fit_rows = np.isfinite(train_x).all(axis=1)
    if len(set(train_y[fit_rows])) < 2 or len(set(val_y)) < 2:
        return None, None, {"skipped": "the training or validation photos lack genuine or counterfeit items"}
    weights, bias, mean, std = fit_logistic(train_x[fit_rows], train_y[fit_rows])
    check = AlignedCheck(products, weights, bias, mean, std, neighbours)

    probabilities = calibrated_probabilities(val[0].outputs["logits"], metadata.temperature, metadata.score_calibration,
                                             metadata.class_names)
    supervised = counterfeit_score(probabilities, metadata.class_names)
    aligned = np.where(np.isfinite(val_x).all(axis=1), check.score(np.nan_to_num(val_x)), np.nan)
    usable = np.isfinite(aligned)
    clipped = np.clip(supervised, 1e-9, 1 - 1e-9)
    fewest = min(int((val_y[usable]).sum()), int((~val_y[usable]).sum()))
    if fewest < MIN_PER_CLASS:
        return None, None, {"skipped": f"{fewest} validation photos of one kind registered onto their references; "
                                       f"the fusion needs at least {MIN_PER_CLASS} of each"}
    genuine_scores = np.sort(aligned[usable & ~val_y])[::-1]
    fires_above = float(genuine_scores[int(_FIRE_RATE * len(genuine_scores))]) if len(genuine_scores) else 0.0
    check = AlignedCheck(products, weights, bias, mean, std, neighbours, (1.0, 0.0, 0.0), fires_above)
    evidence = check.evidence(aligned)
    fusion = (1.0, *fit_added_evidence(np.log(clipped / (1 - clipped))[usable], evidence[usable], val_y[usable]))
    check = AlignedCheck(products, weights, bias, mean, std, neighbours, fusion, fires_above)
    stacked = counterfeit_score(stack_evidence(probabilities, metadata.class_names, evidence, fusion), metadata.class_names)
    before, after = roc_auc(supervised, val_y), roc_auc(stacked, val_y)
    if after < before:  # a check that does not help on validation photos does not ship
        return None, None, {"skipped": f"validation ROC-AUC {after:.4f} stacked against {before:.4f} without"}
    chosen = metadata.operating_point
    try:
        operating_point = choose_operating_point(stacked, val_y, chosen.max_false_alarm_rate, chosen.min_counterfeit_recall)
    except ConfigError:
        operating_point = None
    summary = {
        "reference_photos": {product: len(r.pixels) for product, r in products.items()},
        "size": size, "neighbours": neighbours,
        "fit_photos": int(fit_rows.sum()), "validation_photos": int(usable.sum()),
        "not_registered": {"train": int((~fit_rows).sum()), "validation": int((~usable).sum())},
        "weights": {name: round(float(v), 4) for name, v in zip(FEATURES, weights)},
        "fusion": [round(v, 4) for v in fusion], "fires_above": round(fires_above, 4),
        "operating_point_before": chosen.to_dict(),
        "validation_roc_auc": {"classifier": round(before, 4), "stacked": round(after, 4)},
    }
    reporter.message(
        f"aligned check: {sum(summary['reference_photos'].values())} references, fusion a={fusion[0]:.2f} "
        f"b={fusion[1]:.2f} c={fusion[2]:.2f}; validation ROC-AUC {before:.4f} -> {after:.4f}; operating point chosen "
        f"again on {len(val_y)} validation photos"
    )
    return check, operating_point, summary


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 0.01, steps: int = 3000):
    """Standardised L2 logistic regression by gradient descent -> (weights, bias, mean, std);
    deterministic, and small enough (a few hundred rows, a handful of columns) for numpy."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xs @ w + b)))
        w -= 0.1 * (xs.T @ (p - y) / len(y) + l2 * w)
        b -= 0.1 * float((p - y).mean())
    return w, float(b), mean, std


def fit_added_evidence(classifier_logits: np.ndarray, evidence: np.ndarray, labels: np.ndarray,
                       steps: int = 3000) -> tuple[float, float]:
    """(b, c) of sigmoid(classifier log-odds + b * evidence + c), b >= 0, by gradient descent on
    the log-loss: the classifier keeps its weight of 1, the check can only add to it."""
    offset = np.asarray(classifier_logits, dtype=np.float64)
    x = np.asarray(evidence, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    scale = float(x.std()) + 1e-6
    b = c = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(offset + b * x / scale + c, -40, 40)))
        b = max(0.0, b - 0.1 * float(((p - y) * x / scale).mean()))
        c -= 0.1 * float((p - y).mean())
    return b / scale, c
