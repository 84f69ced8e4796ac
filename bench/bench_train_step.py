"""Training-step throughput of the default classifier on this machine's CPU.

    python bench/bench_train_step.py [--sizes 224 160] [--batch 32] [--steps 5] [--bf16]

One forward + backward + AdamW step on a random batch, in images per second, for each
combination of input size, glibc malloc settings and memory format. Each variant runs in
its own fresh process, because malloc reads MALLOC_*_ variables only at start-up.
Numbers are ratios to compare within one run, not promises: other load on the machine
moves them all.

Why the malloc variables matter: by default glibc returns large freed blocks to the OS
immediately, so eager PyTorch page-faults the same activation memory back in on every
step. Raising both thresholds keeps that memory mapped (the Makefile exports them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


def measure(size: int, batch: int, steps: int, warmup: int, channels_last: bool, bf16: bool) -> float:
    import torch

    from longteng.model.network import ModelConfig, create_model

    torch.manual_seed(0)
    model = create_model(ModelConfig(num_classes=6), weights="none").train()
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 6, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def run_variant(args: argparse.Namespace, size: int, malloc: bool, channels_last: bool, bf16: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_TUNING}
    if malloc:
        env.update(MALLOC_TUNING)
    command = [
        sys.executable, __file__, "--child",
        "--sizes", str(size), "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
    ]
    command += ["--channels-last"] if channels_last else []
    command += ["--bf16"] if bf16 else []
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 160])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast (tuned malloc, channels_last)")
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        rate = measure(args.sizes[0], args.batch, args.steps, args.warmup, args.channels_last, args.bf16)
        print(json.dumps({"images_per_second": rate}))
        return

    import torch

    print(f"efficientnet_lite0 train step, batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    variants = [(False, False, False), (True, False, False), (False, True, False), (True, True, False)]
    if args.bf16:
        variants.append((True, True, True))
    print(f"{'size':>5} {'malloc':>8} {'memory format':>15} {'dtype':>9} {'img/s':>8} {'vs default':>11}")
    for size in args.sizes:
        baseline = None
        for malloc, channels_last, bf16 in variants:
            rate = run_variant(args, size, malloc, channels_last, bf16)
            baseline = baseline or rate
            print(
                f"{size:>5} {'tuned' if malloc else 'default':>8} "
                f"{'channels_last' if channels_last else 'contiguous':>15} {'bfloat16' if bf16 else 'float32':>9} "
                f"{rate:>8.1f} {rate / baseline:>10.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
