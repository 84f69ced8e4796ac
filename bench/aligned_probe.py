"""How well the aligned comparison with genuine references (inference/aligned_check.py) tells
counterfeits, alone and fused with the classifier, on a seed the model never saw.

Crops every photo where an exported model's glance looks (the runtime's path), keeps
--references genuine training photos per product as the bank, learns the check's weights on
the other training photos (references of the photo's own seizure case left out), fits the
fusion on the validation split and reports ROC-AUC and recall at FA <= 0.02 on the test seed:

    python bench/aligned_probe.py --model RUN/model.onnx --train /tmp/dev/train --test /tmp/dev/test --cache /tmp/aligned
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from longteng.data.layout import parse_tells, scan_dataset
from longteng.export.aligned_fit import fit_added_evidence, fit_logistic
from longteng.inference.aligned_check import DEFAULT_REFERENCES, DEFAULT_SIZE, FEATURES, MIN_CORRELATION, ProductReferences, compare, shrink
from longteng.training.metrics import recall_at_false_alarm_rate, roc_auc


def runtime_crops(args) -> dict:
    """The runtime's crops of both seeds at the check's size, and the calibrated classifier
    score of each photo; cached, since the glance and focus passes are the slow part."""
    cache = args.cache / f"crops-{args.size}.npz"
    if cache.is_file():
        return dict(np.load(cache, allow_pickle=False))
    from longteng.decision import calibrate_scores, counterfeit_score
    from longteng.inference.session import OnnxModel
    from longteng.inference.two_stage import outputs_for_paths

    train_records = scan_dataset(args.train)
    if args.train_limit and len(train_records) > args.train_limit:  # a reproducible sample of the training seed
        keep = np.sort(np.random.default_rng(0).choice(len(train_records), args.train_limit, replace=False))
        train_records = [train_records[i] for i in keep]
    rows = [("train", r) for r in train_records] + [("test", r) for r in scan_dataset(args.test)]
    model = OnnxModel(args.model)
    metadata = model.metadata
    paths = [(args.train if seed == "train" else args.test) / r.path for seed, r in rows]
    found = outputs_for_paths(model, paths, ("probabilities",), keep_crops=True)
    if found.failures:
        raise SystemExit(f"{len(found.failures)} photos failed to decode: {found.failures[0]}")
    probabilities = calibrate_scores(found.outputs["probabilities"], metadata.score_calibration, metadata.class_names)
    data = {
        "crops": np.stack([shrink(c, args.size) for c in found.crops]), "supervised": counterfeit_score(probabilities, metadata.class_names),
        "aspects": np.array([v.box.width / v.box.length if v.box is not None else 1.0 for v in found.views]),
        "products": np.array([r.product for _, r in rows]), "seeds": np.array([s for s, _ in rows]),
        "splits": np.array([r.split for _, r in rows]), "cases": np.array([f"{s}/{r.case_id}" for s, r in rows]),
        "counterfeit": np.array([r.authenticity == "counterfeit" for _, r in rows]),
        "tells": np.array([r.extra.get("tells", "") for _, r in rows]),
    }
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def fit_stacking(classifier_logits: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(a, b, c): a logistic regression of the label on [classifier log-odds, check score], its
    standardisation folded into the three numbers (the runtime's rule before the hinge)."""
    w, b, mean, std = fit_logistic(np.stack([classifier_logits, scores], axis=1), labels)
    return (float(w[0] / std[0]), float(w[1] / std[1]), float(b - w[0] * mean[0] / std[0] - w[1] * mean[1] / std[1]))


def measure(scores: np.ndarray, positive: np.ndarray) -> dict:
    return {"roc_auc": round(roc_auc(scores, positive), 3),
            "recall_at_fa_0.02": round(recall_at_false_alarm_rate(scores, positive, 0.02), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported two-stage model (RUN/model.onnx)")
    parser.add_argument("--train", type=Path, required=True, help="the model's training dataset")
    parser.add_argument("--test", type=Path, required=True, help="a dataset of another seed")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--references", type=int, default=DEFAULT_REFERENCES, help="genuine references per product")
    parser.add_argument("--train-limit", type=int, default=0, help="photos of the training seed to use (0: all)")
    parser.add_argument("--leave-out", action="store_true", help="also: each tell unseen by the check's weights")
    parser.add_argument("--drop-features", default="", help="comma-separated FEATURES the check's weights do not use (an ablation)")
    parser.add_argument("--box-aspect", action="store_true",
                        help="also give the weights how far the glance box's aspect is from the product's references'")
    args = parser.parse_args()
    started = time.perf_counter()
    data = runtime_crops(args)
    print(f"crops ready in {time.perf_counter() - started:.0f} s", flush=True)

    rng = np.random.default_rng(0)
    is_reference = np.zeros(len(data["crops"]), dtype=bool)
    banks = {}
    for product in sorted(set(data["products"])):
        candidates = np.flatnonzero((data["seeds"] == "train") & (data["splits"] == "train") & ~data["counterfeit"]
                                    & (data["products"] == product))
        chosen = np.sort(rng.choice(candidates, size=min(args.references, len(candidates)), replace=False))
        is_reference[chosen] = True
        banks[product] = (ProductReferences.build(data["crops"][chosen], data["aspects"][chosen]), data["cases"][chosen])
    print(f"references registered in {time.perf_counter() - started:.0f} s", flush=True)

    rows = np.flatnonzero(~is_reference)
    x = np.full((len(data["crops"]), len(FEATURES)), np.nan)
    features_cache = args.cache / f"features-{args.size}-{args.references}-{len(FEATURES)}.npy"
    if features_cache.is_file():
        x = np.load(features_cache)
    else:
        for row in rows:
            references, cases = banks[data["products"][row]]
            comparison = compare(references, data["crops"][row], exclude=cases == data["cases"][row])
            if comparison.correlation >= MIN_CORRELATION:  # as the runtime: no say on a crop that does not register
                x[row] = comparison.features
        np.save(features_cache, x)
    print(f"compared {len(rows)} photos in {time.perf_counter() - started:.0f} s", flush=True)

    names = list(FEATURES)
    if args.box_aspect:
        reference_aspect = {product: bank.aspect for product, (bank, _) in banks.items()}
        box = np.abs(np.log(data["aspects"] / np.array([reference_aspect[p] for p in data["products"]])))
        x, names = np.column_stack([x, np.where(np.isfinite(x).all(axis=1), box, np.nan)]), names + ["box_aspect"]
    dropped = [name for name in args.drop_features.split(",") if name]
    if unknown := sorted(set(dropped) - set(names)):
        raise SystemExit(f"--drop-features: unknown {unknown}; allowed: {names}")
    kept = [k for k, name in enumerate(names) if name not in dropped]
    x, names = x[:, kept], [names[k] for k in kept]
    y = data["counterfeit"]
    test = data["seeds"] == "test"
    train = (data["seeds"] == "train") & (data["splits"] == "train") & ~is_reference
    val = (data["seeds"] == "train") & (data["splits"] == "val")
    registered = np.isfinite(x).all(axis=1)
    report = {"features alone (test ROC-AUC, registered crops)": {
        name: round(roc_auc(x[test & registered, k], y[test & registered]), 3) for k, name in enumerate(names)}}
    w, b, mu, sd = fit_logistic(x[train & registered], y[train & registered])
    aligned = ((x - mu) / sd) @ w + b  # NaN where it had no say
    supervised = np.log(np.clip(data["supervised"], 1e-6, 1 - 1e-6) / np.clip(1 - data["supervised"], 1e-6, 1))
    a, b_, c = fit_stacking(supervised[val & registered], aligned[val & registered], y[val & registered])
    linear = np.where(registered, a * supervised + b_ * np.nan_to_num(aligned) + c, supervised)  # the earlier rule
    # Variants: the check speaks only beyond what a share of genuine validation photos reach
    # (a hinge), with the classifier's weight fitted or held at 1 ("added": the runtime's rule
    # at the share 0.02, reported as "fused").
    hinged = {}
    genuine_val = np.sort(aligned[val & registered & ~y])[::-1]
    for share in (0.02, 0.1, 0.3):
        knee = genuine_val[int(share * len(genuine_val))]
        hinge = np.maximum(np.nan_to_num(aligned, nan=-np.inf) - knee, 0.0)
        ha, hb, hc = fit_stacking(supervised[val & registered], hinge[val & registered], y[val & registered])
        hinged[f"fused_hinge_{share}"] = np.where(registered, ha * supervised + hb * hinge + hc, supervised)
        report[f"hinge fusion at {share} (a, b, c, knee)"] = [round(float(v), 3) for v in (ha, hb, hc, knee)]
        # The classifier keeps its full say (a = 1): the check only adds evidence beyond the knee.
        gb, gc = fit_added_evidence(supervised[val & registered], hinge[val & registered], y[val & registered])
        hinged[f"added_hinge_{share}"] = np.where(registered, supervised + gb * hinge + gc, supervised)
        report[f"added hinge at {share} (b, c)"] = [round(gb, 3), round(gc, 3)]
    lowest = np.nanmin(aligned) - 1.0
    aligned = np.where(registered, aligned, lowest)
    fused = hinged.pop("added_hinge_0.02")
    np.savez(args.cache / "scores.npz", features=x, aligned=aligned, fused=fused, is_reference=is_reference)
    report["weights"] = {name: round(float(v), 2) for name, v in zip(names, w)}
    report["linear stacking (a, b, c)"] = [round(float(v), 3) for v in (a, b_, c)]
    for name, value in (("aligned", aligned), ("supervised", supervised), ("fused", fused), ("linear_stacking", linear), *hinged.items()):
        report[name] = measure(value[test], y[test])
        genuine = np.sort(value[test & ~y])[::-1]
        threshold = genuine[int(0.02 * len(genuine))]
        per_tell = defaultdict(list)
        for score, tells in zip(value[test & y], data["tells"][test & y]):
            for tell in parse_tells(str(tells)):
                per_tell[tell].append(score > threshold)
        report[name]["per_tell"] = {t: round(float(np.mean(v)), 2) for t, v in sorted(per_tell.items())}
    if args.leave_out:
        # Each tell in turn unseen by the check's weights: fitted on the training photos whose
        # counterfeits do not carry it, tested on the test counterfeits that do (and all genuine).
        carries = {t: np.array([t in parse_tells(str(v)) for v in data["tells"]]) for t in sorted({t for v in data["tells"] for t in parse_tells(str(v))})}
        report["leave_one_tell_out (aligned alone, recall at FA <= 0.02)"] = {}
        for tell, carrying in carries.items():
            fit_rows = train & registered & ~carrying
            wt, bt, mt, st = fit_logistic(x[fit_rows], y[fit_rows])
            held = np.where(registered, ((np.nan_to_num(x) - mt) / st) @ wt + bt, lowest)
            subset = test & (~y | carrying)
            report["leave_one_tell_out (aligned alone, recall at FA <= 0.02)"][tell] = measure(held[subset], y[subset])["recall_at_fa_0.02"]
        values = list(report["leave_one_tell_out (aligned alone, recall at FA <= 0.02)"].values())
        report["leave_one_tell_out mean"] = round(float(np.mean(values)), 3)
    report["seconds"] = round(time.perf_counter() - started)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
