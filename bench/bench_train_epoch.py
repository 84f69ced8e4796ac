"""Training throughput: the run's decode-once cache vs decoding photos from disk every epoch.

Both pipelines run the same fine-tuning step (EfficientNet-Lite0, channels_last, AdamW) on the
same synthetic photos in one process, so the ratio is meaningful on a shared, noisy machine.

    .venv/bin/python bench/bench_train_epoch.py [--images 192] [--size 1600x1200] [--image-size 224]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "1000000000")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "1000000000")

import numpy as np
import torch
import torch.nn.functional as F

from longteng.data.layout import class_names, scan_dataset
from longteng.data.synth import SynthConfig, synthesize
from longteng.model.network import ModelConfig, create_model
from longteng.preprocess import PreprocessSpec, load_resized, normalize
from longteng.training.augment import augment_batch
from longteng.training.cache import decode_images
from longteng.training.config import AugmentConfig


class _DiskDataset(torch.utils.data.Dataset):
    """What a user writes without the cache: decode and resize the photo at every access."""

    def __init__(self, root: Path, paths: list[str], labels: np.ndarray, spec: PreprocessSpec) -> None:
        self.root, self.paths, self.labels, self.spec = root, paths, labels, spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return torch.from_numpy(load_resized(self.root / self.paths[i], self.spec).copy()), int(self.labels[i])


def _step(model, optimizer, pixels: torch.Tensor, labels: torch.Tensor, spec: PreprocessSpec, generator) -> None:
    augmented = augment_batch(pixels, AugmentConfig(), spec, generator)
    inputs = torch.from_numpy(normalize(augmented.numpy(), spec)).contiguous(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--size", default="1600x1200", help="photo size of the synthetic data")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        synthesize(SynthConfig(images=args.images, seed=7, size=(width, height)), root, workers=2)
        records = scan_dataset(root)
        classes = class_names(records)
        labels = np.array([classes.index(r.label) for r in records])
        spec = PreprocessSpec(input_size=args.image_size, mean=(0.5,) * 3, std=(0.5,) * 3)
        torch.manual_seed(0)
        model = create_model(ModelConfig(num_classes=len(classes))).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        generator = torch.Generator().manual_seed(0)
        n_batches = len(records) // args.batch_size

        started = time.perf_counter()
        decoded = decode_images(root, records, spec, workers=2)
        decode_seconds = time.perf_counter() - started

        # Warm-up step (allocator, kernels) outside the timings.
        _step(model, optimizer, torch.from_numpy(np.array(decoded.pixels[: args.batch_size])), torch.from_numpy(labels[: args.batch_size]), spec, generator)

        started = time.perf_counter()
        order = np.random.default_rng(0).permutation(len(records))
        for b in range(n_batches):
            index = np.sort(order[b * args.batch_size : (b + 1) * args.batch_size])
            _step(model, optimizer, torch.from_numpy(np.array(decoded.pixels[index])), torch.from_numpy(labels[index]), spec, generator)
        cached = n_batches * args.batch_size / (time.perf_counter() - started)

        loader = torch.utils.data.DataLoader(
            _DiskDataset(root, [r.path for r in records], labels, spec), batch_size=args.batch_size, shuffle=True,
            num_workers=2, drop_last=True, persistent_workers=False,
        )
        started = time.perf_counter()
        for pixels, batch_labels in loader:
            _step(model, optimizer, pixels, batch_labels, spec, generator)
        from_disk = n_batches * args.batch_size / (time.perf_counter() - started)

    print(f"photos: {len(records)} at {args.size}, model input {args.image_size}px, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"{'pipeline':<44} {'img/s':>8}")
    print(f"{'decode + resize once (2 processes)':<44} {len(records) / decode_seconds:>8.1f}")
    print(f"{'epoch from the cache (longteng)':<44} {cached:>8.1f}")
    print(f"{'epoch decoding from disk (DataLoader, 2 workers)':<44} {from_disk:>8.1f}")
    print(f"cache speed-up per epoch after the first: {cached / from_disk:.2f}x")


if __name__ == "__main__":
    main()
