"""Synthetic-photo throughput: images/s at 640x480 with 1 and 2 workers, and at phone size.

Each run writes a fresh dataset to a temporary folder; the time includes starting the
worker processes and writing the manifest, as `longteng data synth` pays them too.
The 2-worker speed-up is a ratio measured in one process, meaningful on a noisy machine.

    .venv/bin/python bench/bench_synth.py [--images 200] [--big-images 3] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from longteng.data.synth import SynthConfig, synthesize


def measure(images: int, size: tuple[int, int], workers: int, seed: int) -> float:
    """Images per second for one synthesize() call (wall clock)."""
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as folder:
        config = SynthConfig(images=images, seed=seed, size=size)
        started = time.perf_counter()
        synthesize(config, Path(folder) / "out", workers=workers)
        return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="photos per 640x480 run")
    parser.add_argument("--big-images", type=int, default=3, help="photos per 4000x3000 run (0 skips it)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    rows: list[tuple[str, int, int, float]] = []
    for workers in worker_counts:
        rows.append(("640x480", args.images, workers, measure(args.images, (640, 480), workers, args.seed)))
    if args.big_images:
        rows.append(("4000x3000", args.big_images, 1, measure(args.big_images, (4000, 3000), 1, args.seed)))

    print(f"{'size':>10} {'images':>7} {'workers':>8} {'images/s':>9} {'s/image':>8}")
    for size, images, workers, rate in rows:
        print(f"{size:>10} {images:>7} {workers:>8} {rate:>9.1f} {1 / rate:>8.3f}")
    small = {workers: rate for size, _, workers, rate in rows if size == "640x480"}
    if 1 in small and 2 in small:
        print(f"speed-up with 2 workers: {small[2] / small[1]:.2f}x")


if __name__ == "__main__":
    main()
