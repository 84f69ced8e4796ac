"""Quality bar of the training issue: train on one synthetic seed, test on another.

Each scenario synthesizes a training set (seed 1) and an independent test set (seed 2),
trains with `longteng train` (wall time measured) and scores the test set with
`longteng evaluate --split all`. Reported per scenario: counterfeit recall at a false-alarm
rate of at most 0.02 (from the test ROC), recall / false alarms / REFER rate at the
operating point stored with the model, ROC-AUC, ECE after calibration, product accuracy.

Scenarios:
  medium, hard       the bar itself (target: recall >= 0.98 at FAR <= 0.02, ECE <= 0.03,
                     training <= 15 min on 2 CPU cores) and the harder variant
  unseen-TELL        trained with --exclude-tells TELL (medium); every counterfeit in its
                     test set carries TELL, so its recall is generalisation to a new trick

    python bench/quality_bar.py                      # all three, the defaults below
    python bench/quality_bar.py --scenarios medium --images 1000 --epochs 2   # a smoke run

The commands run are echoed, so every number can be reproduced by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONGTENG = [sys.executable, "-m", "longteng"]


def run(command: list[str], capture: bool = False) -> str:
    print("$ " + " ".join(["longteng", *command[3:]] if command[:3] == LONGTENG else command), flush=True)
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "1000000000")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "1000000000")
    result = subprocess.run(command, check=True, text=True, env=env,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def synth(out: Path, images: int, seed: int, difficulty: str, size: str, extra: list[str]) -> None:
    if (out / "manifest.csv").exists():
        return
    run([*LONGTENG, "data", "synth", str(out), "--images", str(images), "--seed", str(seed),
         "--difficulty", difficulty, "--size", size, "--workers", "2", *extra])


def scenario(name: str, args: argparse.Namespace, work: Path) -> dict:
    difficulty = "hard" if name == "hard" else "medium"
    train_extra: list[str] = []
    test_extra: list[str] = []
    if name.startswith("unseen-"):
        tell = name.removeprefix("unseen-")
        train_extra = ["--exclude-tells", tell]
        test_extra = ["--tells", tell]
    train_data = work / f"{name}-train"
    test_data = work / f"{name}-test"
    synth(train_data, args.images, args.train_seed, difficulty, args.size, train_extra)
    synth(test_data, args.test_images, args.test_seed, difficulty, args.size, test_extra)

    run_dir = work / f"{name}-run"
    started = time.perf_counter()
    run([*LONGTENG, "train", str(train_data), "--out", str(run_dir), "--epochs", str(args.epochs),
         "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
         "--frozen-epochs", str(args.frozen_epochs), "--workers", "2", "--seed", "0"])
    train_seconds = time.perf_counter() - started
    report = json.loads(run([*LONGTENG, "evaluate", str(run_dir / "best.pt"), str(test_data),
                             "--split", "all", "--out", str(run_dir / "test-report"), "--json"], capture=True))
    at_far = {round(row["max_false_alarm_rate"], 4): row for row in report["counterfeit"]["recall_at_false_alarm_rate"]}
    op = report["operating_point"]
    return {
        "scenario": name,
        "difficulty": difficulty,
        "train_images": args.images,
        "test_images": report["n_photos"],
        "train_minutes": round(train_seconds / 60, 2),
        "recall_at_far_0.02": at_far.get(0.02, {}).get("recall"),
        "roc_auc": report["counterfeit"]["roc_auc"],
        "ece": report["calibration"]["ece_top_class"],
        "ece_uncalibrated": report["calibration"]["uncalibrated"]["ece_top_class"],
        "op_recall": op["counterfeit_recall"],
        "op_false_alarm_rate": op["false_alarm_rate"],
        "op_refer_rate": op["refer_rate"],
        "product_accuracy": report["product"]["accuracy"],
        "accuracy": report["accuracy"],
    }


def markdown(rows: list[dict]) -> str:
    columns = ["scenario", "train_minutes", "recall_at_far_0.02", "roc_auc", "ece", "ece_uncalibrated",
               "op_recall", "op_false_alarm_rate", "op_refer_rate", "product_accuracy"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["medium", "hard", "unseen-glyph_swap"])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--frozen-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "quality_bar")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    # Scenarios are often run one command at a time: keep the rows of earlier commands.
    results_file = args.work / "results.json"
    rows = json.loads(results_file.read_text())["rows"] if results_file.exists() else []
    for name in args.scenarios:
        row = scenario(name, args, args.work)
        row["args"] = {k: str(v) for k, v in vars(args).items() if k != "scenarios"}
        rows = [r for r in rows if r["scenario"] != name] + [row]
        results_file.write_text(json.dumps({"rows": rows}, indent=2))
    print()
    print(markdown(rows))
    print(f"\n(json: {args.work / 'results.json'})")


if __name__ == "__main__":
    main()
