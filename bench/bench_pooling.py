"""Which pooling turns the focus stage's class maps into logits: the same data, the same
defaults, only `--pooling` changes; compared on the dataset's test split (recall at a
false-alarm rate of at most 0.02, ROC-AUC) and, with --test, on another seed through the
exported model.

    python bench/bench_pooling.py DATA [--test OTHER_SEED_DATA] [--poolings lse avg max topk] [--epochs N]

Writes bench/results/pooling/results.json and prints a table; the commands are echoed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONGTENG = [sys.executable, "-m", "longteng"]


def run(arguments: list[str], capture: bool = False) -> str:
    print("$ longteng " + " ".join(arguments), flush=True)
    done = subprocess.run([*LONGTENG, *arguments], check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return done.stdout if capture else ""


def recall_at(report: dict, level: float) -> float | None:
    for row in report["counterfeit"]["recall_at_false_alarm_rate"]:
        if abs(row["max_false_alarm_rate"] - level) < 1e-9:
            return row["recall"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--test", type=Path, default=None, help="a dataset of another seed, scored through the export")
    parser.add_argument("--poolings", nargs="+", default=["lse", "avg", "max", "topk"])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "pooling")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for pooling in args.poolings:
        out = args.work / f"{args.data.name}-{pooling}"
        extra = ["--epochs", str(args.epochs)] if args.epochs else []
        started = time.perf_counter()
        run(["train", str(args.data), "--out", str(out), "--pooling", pooling, *extra])
        seconds = time.perf_counter() - started
        report = json.loads((out / "report" / "report.json").read_text())
        row = {
            "pooling": pooling, "train_minutes": round(seconds / 60, 2),
            "test_split_recall_at_far_0.02": recall_at(report, 0.02), "test_split_roc_auc": report["counterfeit"]["roc_auc"],
        }
        if args.test is not None:
            run(["export", str(out), "--out", str(out / "model.onnx")])
            other = json.loads(run(["evaluate", str(out / "model.onnx"), str(args.test), "--split", "all", "--json"], capture=True))
            row.update({"other_seed_recall_at_far_0.02": recall_at(other, 0.02), "other_seed_roc_auc": other["counterfeit"]["roc_auc"]})
        rows.append(row)
        (args.work / "results.json").write_text(json.dumps({"rows": rows}, indent=2))
    columns = list(rows[0])
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
