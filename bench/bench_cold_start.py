"""Cold start of the officer's verdict: `longteng predict` (onnxruntime) vs the same network in PyTorch.

Wall time from process start to the printed verdict for one 4000x3000 phone JPEG, each path in
a fresh process, 5 times each (alternating, after one untimed warm-up of each so every path
finds the files in the page cache and Python's bytecode compiled, as on an installed machine).
Reports the medians, the ratio, the CPU time of each (steadier than wall time on a shared
machine) and a third path, the runtime floor: the same onnxruntime calls with no command-line
framework around them, to show what argument parsing and output cost. Targets: `longteng predict` at most 0.6 s on 2 cores (two-stage), and at least
6x faster than the PyTorch path.

The PyTorch path is what one would write without the runtime: import torch, build the network
with timm through longteng.model.checkpoint.build_model, load the checkpoint, decode with the
same loader and preprocessing, decide with the same operating point, print the verdict. It
skips the unknown-object score, so it does slightly less work than `longteng predict`.

Needs a trained checkpoint and its export; by default runs/demo/best.pt and runs/demo/model.onnx:

    make demo
    .venv/bin/longteng train datasets/demo --out runs/demo
    .venv/bin/longteng export runs/demo --out runs/demo/model.onnx
    .venv/bin/python bench/bench_cold_start.py [--checkpoint runs/demo/best.pt] [--model runs/demo/model.onnx]
        [--photo PHOTO.jpg] [--cores 2] [--repeats 5]

Without --photo a 4000x3000 JPEG is generated with `longteng data synth` (fictional brands).
Results go to bench/results/cold_start.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 0.6  # two-stage: process start to verdict, glance and focus included
TARGET_RATIO = 6.0

TORCH_SCRIPT = """
import sys
import numpy as np
import torch
from longteng.decision import OperatingPoint, decide, softmax
from longteng.model.checkpoint import build_model, load_checkpoint
from longteng.preprocess import load_and_preprocess

checkpoint = load_checkpoint(sys.argv[1])
network = build_model(checkpoint)
pixels = load_and_preprocess(sys.argv[2], checkpoint.preprocess)[None]
with torch.inference_mode():
    logits = network(torch.from_numpy(pixels)).numpy()
probabilities = softmax(logits, checkpoint.temperature)
decision = decide(probabilities, checkpoint.class_names, OperatingPoint.from_dict(checkpoint.operating_point))[0]
print(sys.argv[2], decision.verdict, decision.product, f"{decision.confidence:.1%}")
"""

TORCH_TWO_STAGE_SCRIPT = """
import sys
import torch
from longteng.decision import OperatingPoint, decide, softmax
from longteng.model.checkpoint import build_two_stage, focus_spec_of
from longteng.focus import GlanceFrame, box_from_maps, decode_for_focus, focus_crop, glance_pixels
from longteng.model.checkpoint import load_checkpoint
from longteng.preprocess import normalize

checkpoint = load_checkpoint(sys.argv[1])
network = build_two_stage(checkpoint)
spec, focus = checkpoint.preprocess, focus_spec_of(checkpoint)
photo = decode_for_focus(sys.argv[2], focus)
glance = glance_pixels(photo, spec)
with torch.inference_mode():
    objectness, up = network.glance(torch.from_numpy(normalize(glance[None], spec)))
    frame = GlanceFrame.of(photo.image.size, spec)
    box = box_from_maps(torch.sigmoid(objectness)[0].numpy(), up[0].numpy(), frame, spec.input_size)
    crop = focus_crop(photo.image, box, focus, spec.pad_color)
    logits = network.focus(torch.from_numpy(normalize(crop[None], spec)))[0].numpy()
probabilities = softmax(logits, checkpoint.temperature)
decision = decide(probabilities, checkpoint.class_names, OperatingPoint.from_dict(checkpoint.operating_point))[0]
print(sys.argv[2], decision.verdict, decision.product, f"{decision.confidence:.1%}")
"""

FLOOR_TWO_STAGE_SCRIPT = """
import sys
from pathlib import Path
from longteng.decision import decide
from longteng.inference.session import OnnxModel
from longteng.inference.two_stage import focus_inputs, prepare_photo

model = OnnxModel(sys.argv[1])
crops, views = focus_inputs(model, [prepare_photo(Path(sys.argv[2]), model.metadata)])
probabilities = model.run(crops, outputs=("probabilities",))["probabilities"]
decision = decide(probabilities, model.metadata.class_names, model.metadata.operating_point)[0]
print(sys.argv[2], decision.verdict, decision.product, f"{decision.confidence:.1%}")
"""

# The floor under any command line: the same runtime calls with no CLI framework around them.
# The gap between it and `longteng predict` is what argument parsing and output cost.
FLOOR_SCRIPT = """
import sys
from longteng.decision import decide
from longteng.inference.session import OnnxModel
from longteng.preprocess import load_resized

model = OnnxModel(sys.argv[1])
pixels = load_resized(sys.argv[2], model.metadata.preprocess)[None]
probabilities = model.run(pixels, outputs=("probabilities",))["probabilities"]
decision = decide(probabilities, model.metadata.class_names, model.metadata.operating_point)[0]
print(sys.argv[2], decision.verdict, decision.product, f"{decision.confidence:.1%}")
"""
PREDICT, FLOOR, TORCH = "longteng predict", "runtime floor", "pytorch script"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs/demo/best.pt")
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/model.onnx")
    parser.add_argument("--photo", type=Path, help="A phone photo; default: a generated 4000x3000 JPEG.")
    parser.add_argument("--cores", type=int, default=2, help="CPUs both processes may use (0: all).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/cold_start.json")
    args = parser.parse_args()

    missing = [str(p) for p in (args.checkpoint, args.model) if not p.is_file()]
    if missing:
        print(f"missing {', '.join(missing)}: build them with `make demo`, `longteng train` and `longteng export` "
              "(see this script's docstring), or pass --checkpoint/--model", file=sys.stderr)
        return 1

    from longteng.inference.session import OnnxModel

    two_stage = OnnxModel(args.model).metadata.two_stage
    floor_script, torch_script = (FLOOR_TWO_STAGE_SCRIPT, TORCH_TWO_STAGE_SCRIPT) if two_stage else (FLOOR_SCRIPT, TORCH_SCRIPT)
    with tempfile.TemporaryDirectory(prefix="cold_start_") as scratch:
        photo = args.photo or _phone_photo(Path(scratch))
        commands = {
            PREDICT: [_longteng(), "predict", "--model", str(args.model), str(photo)],
            FLOOR: [sys.executable, "-c", floor_script, str(args.model), str(photo)],
            TORCH: [sys.executable, "-c", torch_script, str(args.checkpoint), str(photo)],
        }
        cpus = _cpus(args.cores)
        for name, command in commands.items():
            print(f"warm-up {name}: {_run(command, cpus)[0]:.3f} s", flush=True)
        wall: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        # Alternating rounds, so a busy machine slows every path alike.
        for _ in range(args.repeats):
            for name, command in commands.items():
                seconds, cpu_seconds = _run(command, cpus)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)

    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    ratio = medians[TORCH] / medians[PREDICT]
    print(f"\nphoto {photo} | {len(cpus) if cpus else os.cpu_count()} CPUs | {args.repeats} runs each")
    for name, values in wall.items():
        print(f"  {name:16s} wall median {medians[name]:.3f} s  CPU median {cpu_medians[name]:.3f} s  "
              f"(wall runs: {', '.join(f'{v:.3f}' for v in values)})")
    print(f"  pytorch / predict: {ratio:.1f}x  (target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}); "
          f"predict {'within' if medians[PREDICT] <= TARGET_SECONDS else 'ABOVE'} the {TARGET_SECONDS} s target; "
          f"CLI overhead over the runtime floor {medians[PREDICT] - medians[FLOOR]:+.3f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "photo": str(photo), "cpus": len(cpus) if cpus else os.cpu_count(), "wall_s": wall, "cpu_s": cpu,
        "median_wall_s": medians, "median_cpu_s": cpu_medians, "ratio": ratio,
        "load_average": os.getloadavg(),
    }, indent=2))
    return 0


def _run(command: list[str], cpus: set[int] | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system)."""
    env = dict(os.environ)
    # An installed package has its bytecode compiled; a checkout with this set would
    # recompile every longteng module on each start and measure the compiler instead.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0 or not completed.stdout.strip():
        raise SystemExit(f"{' '.join(command[:2])} failed ({completed.returncode}):\n{completed.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cpus(count: int) -> set[int] | None:
    available = sorted(os.sched_getaffinity(0))
    if count <= 0 or count >= len(available):
        return None
    return set(available[:count])


def _longteng() -> str:
    script = Path(sys.executable).with_name("longteng")
    return str(script) if script.exists() else "longteng"


def _phone_photo(scratch: Path) -> Path:
    out = scratch / "synth"
    subprocess.run(
        [_longteng(), "data", "synth", str(out), "--images", "1", "--size", "4000x3000", "--seed", "7"],
        check=True, capture_output=True,
    )
    return next(out.rglob("*.jpg"))


if __name__ == "__main__":
    sys.exit(main())
