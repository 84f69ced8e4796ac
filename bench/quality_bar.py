"""Quality bars of the look-closer issue: train on one synthetic seed, test on another.

Each scenario synthesizes a training set (seed 1) and an independent test set (seed 2),
trains with `longteng train DATA --out RUN` and nothing else (the defaults are what users
run; wall time measured), exports the model and scores the test set through the exported
file with `longteng evaluate RUN/model.onnx TEST --split all` (the officer's path: decode,
glance, crop, focus). Reported per scenario: counterfeit recall at a false-alarm rate of at
most 0.02 (test ROC), ROC-AUC, ECE after calibration, recall / false alarms / REFER rate at
the stored operating point, product accuracy, localisation IoU against the generator's
boxes, and recall per tell (at FA <= 0.02, decided COUNTERFEIT, caught including REFER).

Scenarios: medium-1600 (the headline: 1600x1200), medium-640, hard-1600, phone (4000x3000),
phone-on-medium-1600 (the medium-1600 model on 4000x3000 test photos of the test seed: what an
officer's phone sends; use --test-images 500),
single-1600 (the single-stage baseline on the medium-1600 data: --architecture single_stage),
trunk3-1600 (the medium-1600 data, trained with --trunk-blocks 3: block 3 fine-tuned too),
unseen-TELL (medium-1600 trained with --exclude-tells TELL, tested on counterfeits carrying TELL),
loto (unseen-TELL for every tell: the leave-one-tell-out benchmark; per tell and on average, the
recall at FA <= 0.02 of the supervised score, the novelty score, the text check and the fusion).

    python bench/quality_bar.py --scenarios medium-1600
    python bench/quality_bar.py --scenarios medium-640 --images 1000 --test-images 300   # smaller
    python bench/quality_bar.py --scenarios loto --images 600 --test-images 200 --work bench/results/loto

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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LONGTENG = [sys.executable, "-m", "longteng"]


def run(command: list[str], capture: bool = False) -> str:
    print("$ " + " ".join(["longteng", *command[3:]] if command[:3] == LONGTENG else command), flush=True)
    # The user's plain environment: the program sets its own allocator tuning.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(command, check=True, text=True, env=env,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def synth(out: Path, images: int, seed: int, difficulty: str, size: str, extra: list[str]) -> None:
    if (out / "manifest.csv").exists():
        return
    run([*LONGTENG, "data", "synth", str(out), "--images", str(images), "--seed", str(seed),
         "--difficulty", difficulty, "--size", size, "--workers", "2", *extra])


SCENARIOS = {
    # name: (difficulty, photo size, data name, extra train arguments)
    "medium-1600": ("medium", "1600x1200", "medium-1600", []),
    "medium-640": ("medium", "640x480", "medium-640", []),
    "hard-1600": ("hard", "1600x1200", "hard-1600", []),
    "phone": ("medium", "4000x3000", "phone", []),
    "single-1600": ("medium", "1600x1200", "medium-1600", ["--architecture", "single_stage"]),
    # The focus stage with block 3 fine-tuned too (a trunk of 3 frozen blocks, not the default 4).
    "trunk3-1600": ("medium", "1600x1200", "medium-1600", ["--trunk-blocks", "3"]),
    # The defaults before the occluded training views (training/occluders.py): one view per photo.
    "one-view-1600": ("medium", "1600x1200", "medium-1600", ["--focus-views", "1"]),
}


def scenario(name: str, args: argparse.Namespace, work: Path) -> dict:
    train_extra: list[str] = []
    test_extra: list[str] = []
    if name == PHONE_ON_MEDIUM:
        return phone_on_medium(args, work)
    if name.startswith("unseen-"):
        tell = name.removeprefix("unseen-")
        difficulty, size, data_name, train_args = "medium", "1600x1200", name, []
        train_extra, test_extra = ["--exclude-tells", tell], ["--tells", tell]
    else:
        difficulty, size, data_name, train_args = SCENARIOS[name]
    train_data = work / f"{data_name}-train"
    test_data = work / f"{data_name}-test"
    synth(train_data, args.images, args.train_seed, difficulty, size, train_extra)
    synth(test_data, args.test_images, args.test_seed, difficulty, size, test_extra)
    run_dir = work / f"{name}-run"
    train_seconds = None
    if args.reuse_runs and (run_dir / "best.pt").exists():
        print(f"reusing the trained {run_dir} (--reuse-runs): exported and scored again, training not timed", flush=True)
    else:
        started = time.perf_counter()
        run([*LONGTENG, "train", str(train_data), "--out", str(run_dir), *train_args])
        train_seconds = time.perf_counter() - started
    run([*LONGTENG, "export", str(run_dir), "--out", str(run_dir / "model.onnx")])
    return summary(name, difficulty, size, args.images, train_seconds, run_dir / "model.onnx", test_data, run_dir / "test-report")


# The officer's case: one model (trained on 1600x1200 photos), photos straight from a 12 MP
# phone. The runtime decodes them at the JPEG scale that keeps a 1200 px short side, so the
# focus crop reads the product at the phone's resolution, whatever the training photos were.
PHONE_ON_MEDIUM = "phone-on-medium-1600"


def phone_on_medium(args: argparse.Namespace, work: Path) -> dict:
    model = work / "medium-1600-run" / "model.onnx"
    if not model.exists():
        scenario("medium-1600", args, work)
    test_data = work / "phone-on-medium-test"
    synth(test_data, args.test_images, args.test_seed, "medium", "4000x3000", [])
    return summary(PHONE_ON_MEDIUM, "medium", "4000x3000", args.images, None, model, test_data,
                   work / "medium-1600-run" / "phone-test-report")


def summary(name: str, difficulty: str, size: str, train_images: int, train_seconds: float | None,
            model: Path, test_data: Path, report_dir: Path) -> dict:
    report = json.loads(run([*LONGTENG, "evaluate", str(model), str(test_data),
                             "--split", "all", "--out", str(report_dir), "--json"], capture=True))
    at_far = {round(row["max_false_alarm_rate"], 4): row for row in report["counterfeit"]["recall_at_false_alarm_rate"]}
    op = report["operating_point"]
    tells = report.get("tells") or {}
    per_tell = {
        tell: {
            "at_far_0.02": tells.get("by_tell_at_far_0.02", {}).get(tell, {}).get("recall"),
            "decided": tells.get("by_tell_decided", {}).get(tell, {}).get("recall"),
            "caught": row.get("recall"),
            "n": row.get("count"),
        }
        for tell, row in tells.get("by_tell", {}).items()
    }
    return {
        "scenario": name,
        "difficulty": difficulty,
        "size": size,
        "train_images": train_images,
        "test_images": report["n_photos"],
        "train_minutes": None if train_seconds is None else round(train_seconds / 60, 2),
        "recall_at_far_0.02": at_far.get(0.02, {}).get("recall"),
        "roc_auc": report["counterfeit"]["roc_auc"],
        "ece": report["calibration"]["ece_top_class"],
        "ece_uncalibrated": report["calibration"]["uncalibrated"]["ece_top_class"],
        "ece_counterfeit_score": report["calibration"]["ece_counterfeit_score"],
        "score_calibration": report.get("score_calibration"),
        "op_recall": op["counterfeit_recall"],
        "op_false_alarm_rate": op["false_alarm_rate"],
        "op_refer_rate": op["refer_rate"],
        "product_accuracy": report["product"]["accuracy"],
        "accuracy": report["accuracy"],
        "iou_at_least_0.7": (report.get("localisation") or {}).get("iou_at_least_0.7"),
        "median_iou": (report.get("localisation") or {}).get("median_iou"),
        # Where the tells are marked (data synth's evidence column): is the heatmap's peak on one?
        "heatmap_peak_on_tell": (report.get("heatmap_pointing") or {}).get("peak_on_tell"),
        "heatmap_chance": (report.get("heatmap_pointing") or {}).get("chance"),
        "heatmap_by_tell": ((report.get("heatmap_pointing") or {}).get("by_tell") or {}),
        "per_tell": per_tell,
        # The text check (a misspelt logo, a wrong label format): how often it fired.
        "text_check": report.get("text_check"),
        # Recall at FA <= 0.02 of each detector alone and fused (training/detectors.py).
        "detectors": report.get("detectors"),
    }


def loto_table(rows: list[dict]) -> str:
    """Leave-one-tell-out: per held-out tell, recall at FA <= 0.02 of each detector on
    counterfeits carrying only that tell, and the mean over the tells."""
    detectors = ["supervised", "novelty", "text", "fused"]
    lines = ["| held-out tell | train min | " + " | ".join(detectors) + " | ROC-AUC (fused) |", "|" + "---|" * (len(detectors) + 3)]
    recalls: dict[str, list[float]] = {d: [] for d in detectors}
    for row in rows:
        found = (row.get("detectors") or {}).get("detectors", {})
        cells = []
        for detector in detectors:
            recall = (found.get(detector) or {}).get("recall")
            cells.append("-" if recall is None else f"{recall:.3f}")
            if recall is not None:
                recalls[detector].append(recall)
        lines.append(f"| {row['scenario'].removeprefix('unseen-')} | {row.get('train_minutes')} | " + " | ".join(cells)
                     + f" | {row['roc_auc']:.3f} |")
    means = [f"**{np.mean(v):.3f}**" if v else "-" for v in recalls.values()]
    lines.append(f"| mean over {len(rows)} tells | | " + " | ".join(means) + " | |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    columns = ["scenario", "train_minutes", "recall_at_far_0.02", "roc_auc", "ece", "ece_uncalibrated", "ece_counterfeit_score",
               "op_recall", "op_false_alarm_rate", "op_refer_rate", "product_accuracy", "iou_at_least_0.7", "heatmap_peak_on_tell", "heatmap_chance"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row.get(c):.3f}" if isinstance(row.get(c), float) else str(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["medium-1600", "medium-640", "hard-1600"])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "quality_bar")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="where RUN/best.pt exists, skip training: export and score it again (after a change to export or the runtime)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    # "loto": every tell held out in turn (issue 10's leave-one-tell-out benchmark).
    if "loto" in args.scenarios:
        from longteng.data.tell_names import TELL_NAMES

        args.scenarios = [name for name in args.scenarios if name != "loto"] + [f"unseen-{tell}" for tell in TELL_NAMES]

    # Scenarios are often run one command at a time: keep the rows of earlier commands.
    # Read again before each write: another command may have added its rows meanwhile.
    results_file = args.work / "results.json"
    rows: list[dict] = []
    for name in args.scenarios:
        row = scenario(name, args, args.work)
        row["args"] = {k: str(v) for k, v in vars(args).items() if k != "scenarios"}
        rows = json.loads(results_file.read_text())["rows"] if results_file.exists() else []
        rows = [r for r in rows if r["scenario"] != name] + [row]
        results_file.write_text(json.dumps({"rows": rows}, indent=2))
    print()
    print(markdown(rows))
    held_out = [r for r in rows if r["scenario"].startswith("unseen-") and r["scenario"] in args.scenarios]
    if held_out:
        print()
        print(loto_table(held_out))
    print(f"\n(json: {args.work / 'results.json'})")


if __name__ == "__main__":
    main()
