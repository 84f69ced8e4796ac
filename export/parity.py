"""The export gate: the ONNX file must say what the PyTorch checkpoint says, photo for photo.

Both sides see the same uint8 photos from ``longteng.preprocess.load_resized``. The ONNX side
goes through the officer's runtime (``OnnxModel.run``, which normalises by itself); the
PyTorch side through the training evaluation (``torch_logits``). A difference therefore
catches an exporter bug and a preprocessing mismatch between the two paths alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from longteng.errors import CheckpointError
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.model.checkpoint import Checkpoint, build_model
from longteng.preprocess import PreprocessSpec, load_resized

MAX_LOGIT_DIFFERENCE = 1e-3
# Odd on purpose: batches of 7 leave a remainder, so the dynamic batch axis is exercised too.
PARITY_BATCH_SIZE = 7


@dataclass(frozen=True)
class ParityResult:
    n_photos: int
    max_abs_logit_difference: float
    top1_agreement: float  # fraction of photos whose top class is the same
    tolerance: float = MAX_LOGIT_DIFFERENCE

    @property
    def passed(self) -> bool:
        return self.max_abs_logit_difference <= self.tolerance and self.top1_agreement == 1.0

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "passed": self.passed}


def load_photos(paths: Sequence[Path], spec: PreprocessSpec) -> np.ndarray:
    """uint8 (N, S, S, 3) through the runtime's loader; an unreadable file raises ImageLoadError."""
    size = spec.input_size
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        pixels[i] = load_resized(path, spec)
    return pixels


def measure_parity(onnx_path: Path, checkpoint: Checkpoint, pixels: np.ndarray) -> ParityResult:
    """Compare the ONNX model at ``onnx_path`` with ``checkpoint`` on uint8 photos ``pixels``."""
    from longteng.training.evaluate import torch_logits

    if len(pixels) == 0:
        raise CheckpointError("the parity gate needs at least one photo")
    onnx_model = OnnxModel(onnx_path, RuntimeOptions(device="cpu"))
    onnx_logits = np.concatenate([
        onnx_model.run(pixels[start : start + PARITY_BATCH_SIZE], outputs=("logits",))["logits"]
        for start in range(0, len(pixels), PARITY_BATCH_SIZE)
    ])
    reference = torch_logits(build_model(checkpoint), pixels, checkpoint.preprocess, torch.device("cpu"))
    if onnx_logits.shape != reference.shape:
        raise CheckpointError(f"ONNX logits have shape {onnx_logits.shape}, the checkpoint's {reference.shape}")
    difference = np.abs(onnx_logits.astype(np.float64) - reference.astype(np.float64))
    agreement = np.mean(onnx_logits.argmax(axis=1) == reference.argmax(axis=1))
    return ParityResult(len(pixels), float(difference.max()), float(agreement))


def require_parity(result: ParityResult) -> None:
    if not result.passed:
        raise CheckpointError(
            f"export parity failed on {result.n_photos} photos: max |logit difference| "
            f"{result.max_abs_logit_difference:.3g} (allowed {result.tolerance:g}), top-1 agreement "
            f"{result.top1_agreement:.2%} (required 100%); the ONNX file was not written"
        )


def parity_gate(onnx_path: Path, checkpoint: Checkpoint, pixels: np.ndarray) -> ParityResult:
    """measure_parity, raising CheckpointError (with the figures) when the two disagree."""
    result = measure_parity(onnx_path, checkpoint, pixels)
    require_parity(result)
    return result
