"""Run an exported model over many decoded photos in batches (export, evaluation, benchmarks). Torch-free."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from longteng.inference.session import OnnxModel


def onnx_outputs(
    model: OnnxModel,
    pixels: np.ndarray,
    outputs: Sequence[str] = ("logits", "embedding"),
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """uint8 (N, S, S, 3) photos -> {output name: array with N rows}, through ``OnnxModel.run``."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    for start in range(0, len(pixels), batch_size):
        batch = np.asarray(pixels[start : start + batch_size])
        for name, value in model.run(batch, outputs=tuple(outputs)).items():
            chunks[name].append(value)
        if progress:
            progress(len(batch))
    return {name: np.concatenate(parts) for name, parts in chunks.items() if parts}
