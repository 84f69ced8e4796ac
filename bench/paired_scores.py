"""Two models' `longteng score` results on the same labelled photos, side by side: recall at 2%
false alarms, ROC-AUC, per tell, the genuine photos' scores by how much packing covers the item
(the generator's `occlusion` in the manifest's params), and a paired bootstrap over seizure cases
of the difference. Not a test.

    longteng score DATA --model A.onnx --out a.csv
    longteng score DATA --model B.onnx --out b.csv
    .venv/bin/python bench/paired_scores.py DATA a.csv b.csv [--out results.json]

The rows are matched by path; both files must hold every photo of DATA's manifest.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from longteng.data.layout import scan_dataset
from longteng.training.metrics import best_threshold_at_false_alarm_rate, bootstrap_delta, recall_at_false_alarm_rate, roc_auc

FAR = 0.02
COVERAGE_BINS = ((0.0, 1e-4), (1e-4, 0.05), (0.05, 1.0))


def recall_at(scores: np.ndarray, counterfeit: np.ndarray) -> float:
    return recall_at_false_alarm_rate(scores, counterfeit, FAR)


def read_scores(path: Path, root: Path) -> dict[str, float]:
    out = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("counterfeit_score"):  # error rows have none
                out[Path(row["path"]).resolve().relative_to(root.resolve()).as_posix()] = float(row["counterfeit_score"])
    return out


def coverage_of(record) -> float:
    params = json.loads(record.extra.get("params") or "{}")
    occlusion = params.get("occlusion")
    return float(occlusion["coverage"]) if occlusion else 0.0


def summary(scores: np.ndarray, counterfeit: np.ndarray, coverage: np.ndarray, tells: list[set[str]]) -> dict:
    threshold = best_threshold_at_false_alarm_rate(scores, counterfeit, FAR).threshold
    out = {"recall_at_far_0.02": recall_at(scores, counterfeit), "roc_auc": roc_auc(scores, counterfeit), "by_coverage": {}, "per_tell": {}}
    for low, high in COVERAGE_BINS:
        inside = (coverage >= low) & (coverage < high)
        g, c = scores[inside & ~counterfeit], scores[inside & counterfeit]
        out["by_coverage"][f"{low:g}-{high:g}"] = {
            "genuine": len(g), "genuine_mean_score": float(g.mean()) if len(g) else None,
            "genuine_above_threshold": int((g >= threshold).sum()),
            "counterfeit": len(c), "counterfeit_above_threshold": float((c >= threshold).mean()) if len(c) else None,
        }
    for tell in sorted(set().union(*tells)):
        has = np.array([tell in t for t in tells])
        keep = has | ~counterfeit
        out["per_tell"][tell] = recall_at(scores[keep], counterfeit[keep])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    records = scan_dataset(args.data)
    before, after = read_scores(args.before, args.data), read_scores(args.after, args.data)
    missing = [r.path for r in records if r.path not in before or r.path not in after]
    if missing:
        raise SystemExit(f"{len(missing)} photos of {args.data} lack a score in one of the files, e.g. {missing[0]}")
    counterfeit = np.array([r.is_counterfeit for r in records])
    coverage = np.array([coverage_of(r) for r in records])
    tells = [set(r.tells()) for r in records]
    a = np.array([before[r.path] for r in records])
    b = np.array([after[r.path] for r in records])
    result = {"photos": len(records), "before": summary(a, counterfeit, coverage, tells), "after": summary(b, counterfeit, coverage, tells)}
    cases = np.array([r.case_id for r in records])
    recall = bootstrap_delta(lambda y, s: recall_at(s, y), counterfeit, a, b, groups=cases, n_boot=args.resamples)
    auc = bootstrap_delta(lambda y, s: roc_auc(s, y), counterfeit, a, b, groups=cases, n_boot=args.resamples)
    result["difference"] = {"cases": len(np.unique(cases)), "recall_at_far_0.02": list(recall), "roc_auc": list(auc)}
    for name in ("before", "after"):
        r = result[name]
        print(f"{name}: recall at FA <= 0.02 {r['recall_at_far_0.02']:.3f}, ROC-AUC {r['roc_auc']:.4f}")
        for band, c in r["by_coverage"].items():
            mean = "-" if c["genuine_mean_score"] is None else f"{c['genuine_mean_score']:.3f}"
            print(f"  packing over {band} of the item: {c['genuine']} genuine (mean score {mean}, {c['genuine_above_threshold']} above the 2% threshold), "
                  f"{c['counterfeit']} counterfeits")
        print("  per tell: " + ", ".join(f"{t} {v:.3f}" for t, v in r["per_tell"].items()))
    d = result["difference"]
    print(f"after - before, bootstrap over {d['cases']} cases (95% CI): recall {d['recall_at_far_0.02'][0]:+.3f} "
          f"[{d['recall_at_far_0.02'][1]:+.3f}, {d['recall_at_far_0.02'][2]:+.3f}], ROC-AUC {d['roc_auc'][0]:+.4f} "
          f"[{d['roc_auc'][1]:+.4f}, {d['roc_auc'][2]:+.4f}]")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
