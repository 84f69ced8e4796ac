"""Shared fixtures: small generated datasets (no files are downloaded or committed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from longteng.data.layout import Record, format_tells, sha256_file, write_manifest

# Tests share 2 cores with pytest-xdist workers; one intra-op thread each avoids oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def draw_item(product: str, authenticity: str, rng: np.random.Generator, size: int = 72) -> Image.Image:
    """A tiny stand-in photo: the product decides the shape, a counterfeit misses its mark."""
    background = tuple(int(v) for v in rng.integers(90, 170, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    offset = rng.integers(-4, 5, 2)
    box = (14 + offset[0], 14 + offset[1], size - 14 + offset[0], size - 14 + offset[1])
    if product == "drone":
        draw.ellipse(box, fill=(40, 40, 40))
    else:
        draw.rectangle(box, fill=(230, 230, 230))
    centre = (size // 2 + offset[0], size // 2 + offset[1])
    mark = (200, 30, 30) if authenticity == "genuine" else (30, 30, 200)
    draw.rectangle((centre[0] - 7, centre[1] - 7, centre[0] + 7, centre[1] + 7), fill=mark)
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def make_dataset(
    root: Path,
    products: tuple[str, ...] = ("drone", "phone"),
    per_class: dict[str, int] | None = None,
    seed: int = 0,
) -> list[Record]:
    """ROOT/<product>/<authenticity>/*.png with a manifest: cases of 4 photos, split by case."""
    per_class = per_class or {"train": 16, "val": 8, "test": 8}
    rng = np.random.default_rng(seed)
    records = []
    for product in products:
        for authenticity in ("genuine", "counterfeit"):
            for split, count in per_class.items():
                for i in range(count):
                    relative = f"{product}/{authenticity}/{split}_{i:03d}.png"
                    path = root / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    draw_item(product, authenticity, rng).save(path)
                    tells = {"cert_mark": 0.8} if authenticity == "counterfeit" else {}
                    records.append(
                        Record(relative, product, authenticity, f"{product}-{authenticity}-{split}-{i // 4}", split,
                               sha256_file(path), {"tells": format_tells(tells)})
                    )
    write_manifest(root, records, extra_columns=["tells"])
    return records


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_dataset")
    make_dataset(root)
    return root


@pytest.fixture(scope="session")
def tiny_onnx_model(tiny_dataset, tmp_path_factory) -> Path:
    """A model fine-tuned for one epoch on ``tiny_dataset`` (64 px) and exported with every check.

    It starts from the offline ImageNet weights, as every real run does: the unknown-object
    score needs features that know what a cat looks like.

    Returns RUN/model.onnx; its checkpoint is RUN/best.pt beside it (``path.parent / "best.pt"``).
    """
    from longteng.export.exporter import export_model
    from longteng.training.config import TrainConfig
    from longteng.training.trainer import train

    run = tmp_path_factory.mktemp("onnx_run") / "run"
    result = train(TrainConfig(
        data=str(tiny_dataset), out=str(run), architecture="single_stage", epochs=1, image_size=64, batch_size=16, weights="default",
        frozen_epochs=1, workers=1, lr=3e-3, eval_batch_size=32,
    ))
    return export_model(result.best, run / "model.onnx").path
