"""Run a model over decoded photos and turn its outputs into the evaluation report.

`ModelOutputs` is what any scorer (a PyTorch checkpoint now, an ONNX file later)
produces; the report is computed from it by torch-free code, so both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longteng.data.layout import SPLITS, scan_dataset
from longteng.decision import OperatingPoint, softmax
from longteng.errors import CheckpointError, ConfigError, DatasetError
from longteng.preprocess import PreprocessSpec, normalize
from longteng.training.cache import decode_images
from longteng.training.progress import Reporter, SilentReporter


@dataclass
class ModelOutputs:
    logits: np.ndarray  # (N, C) raw logits
    labels: np.ndarray  # (N,) class index, -1 for a class the model does not know


@torch.inference_mode()
def torch_logits(
    model: torch.nn.Module,
    pixels: np.ndarray,
    spec: PreprocessSpec,
    device: torch.device,
    *,
    batch_size: int = 64,
    channels_last: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Logits for uint8 (N, S, S, 3) photos, normalised by the runtime's own function."""
    model.eval()
    chunks = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(pixels), batch_size):
        batch = torch.from_numpy(normalize(np.asarray(pixels[start : start + batch_size]), spec))
        batch = batch.to(device).contiguous(memory_format=memory_format)
        chunks.append(model(batch).float().cpu().numpy())
        if progress:
            progress(len(batch))
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks)


@dataclass
class EvaluationRun:
    report: dict
    probabilities: np.ndarray  # calibrated
    labels: np.ndarray
    records: list  # the evaluated Records, in order
    class_names: list[str]


def evaluate_model(
    model_path: Path | str,
    data_root: Path | str,
    split: str = "test",
    *,
    device: str = "auto",
    workers: int = 1,
    batch_size: int = 64,
    reporter: Reporter | None = None,
) -> EvaluationRun:
    """Score one split of a dataset with a calibrated model and build the full report."""
    from longteng.model.checkpoint import build_model, load_checkpoint, resolve_checkpoint_path
    from longteng.training.distributed import resolve_device
    from longteng.training.report import evaluation_report

    reporter = reporter or SilentReporter()
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} unknown; allowed: {', '.join(SPLITS)}")
    checkpoint = load_checkpoint(resolve_checkpoint_path(model_path))
    if checkpoint.operating_point is None:
        raise CheckpointError(f"{model_path}: model is not calibrated yet (use best.pt of a finished run)")
    classes = checkpoint.class_names
    index = {name: i for i, name in enumerate(classes)}
    records = [r for r in scan_dataset(data_root) if r.split == split]
    unknown = sum(1 for r in records if r.label not in index)
    if unknown:
        reporter.warning(f"{unknown} photos of classes the model does not know are left out")
    records = [r for r in records if r.label in index]
    if not records:
        raise DatasetError(f"{data_root}: no photos of the model's classes in split {split!r}")
    with reporter.task(f"decode {split}", len(records)) as advance:
        decoded = decode_images(Path(data_root), records, checkpoint.preprocess, workers=workers, progress=advance)
    for failure in decoded.failures:
        reporter.warning(f"skipped {failure.path}: {failure.detail}")
    torch_device = resolve_device(device)
    model = build_model(checkpoint).to(torch_device).to(memory_format=torch.channels_last)
    with reporter.task(f"score {split}", len(decoded.records)) as advance:
        logits = torch_logits(model, decoded.pixels, checkpoint.preprocess, torch_device, batch_size=batch_size, progress=advance)
    labels = np.array([index[r.label] for r in decoded.records], dtype=np.int64)
    probabilities = softmax(logits, checkpoint.temperature)
    report = evaluation_report(
        probabilities, labels, classes, OperatingPoint.from_dict(checkpoint.operating_point),
        tells=[r.tells() for r in decoded.records], case_ids=[r.case_id for r in decoded.records], logits=logits,
    )
    report["split"] = split
    report["model"] = str(model_path)
    report["temperature"] = checkpoint.temperature
    report["skipped"] = [f.__dict__ for f in decoded.failures]
    return EvaluationRun(report, probabilities, labels, decoded.records, classes)
