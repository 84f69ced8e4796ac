"""Training-step throughput of the two-stage focus tail on cached trunk features.

    python bench/bench_focus_step.py [--trunks 3 4 5] [--size 384] [--batch 32] [--steps 6]

One forward + backward + AdamW step of what the focus stage fine-tunes (the blocks after the
frozen trunk, conv head, class head) on a random batch of trunk features, in crops per second,
with float32 and with bfloat16 autocast (oneDNN runs bf16 convolutions on AMX or AVX512-BF16
where the CPU has them). Each variant runs in its own fresh process with the trainer's malloc
settings. Ratios within one run are the result: other load on the machine moves them all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def measure(trunk_blocks: int, size: int, batch: int, steps: int, warmup: int, bf16: bool) -> float:
    import torch

    from longteng.model.two_stage import TwoStageConfig, create_two_stage
    from longteng.training.malloc import tune_malloc

    tune_malloc()
    torch.manual_seed(0)
    config = TwoStageConfig(num_classes=6, trunk_blocks=trunk_blocks)
    model = create_two_stage(config, weights="none").to(memory_format=torch.channels_last).train()
    with torch.no_grad():
        features = model.trunk(torch.randn(batch, 3, size, size)).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 6, (batch,))
    optimizer = torch.optim.AdamW(model.trainable_parameters("tail"), lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model.focus_from_features(features)[0]
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trunks", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        rate = measure(args.child, args.size, args.batch, args.steps, args.warmup, args.bf16)
        print(json.dumps({"crops_per_second": rate}))
        return
    rows = []
    for trunk in args.trunks:
        rates = {}
        for bf16 in (False, True):
            command = [
                sys.executable, __file__, "--child", str(trunk), "--size", str(args.size), "--batch", str(args.batch),
                "--steps", str(args.steps), "--warmup", str(args.warmup),
            ] + ["--bf16"] * bf16
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rates["bf16" if bf16 else "fp32"] = json.loads(result.stdout.strip().splitlines()[-1])["crops_per_second"]
        rows.append({"trunk_blocks": trunk, **rates, "bf16_over_fp32": rates["bf16"] / rates["fp32"]})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
