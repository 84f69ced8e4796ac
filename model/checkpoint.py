"""Safe, self-describing checkpoints: the one loader for resume, evaluation and export.

A checkpoint is a torch file holding only tensors, numbers and strings, so it is read with
`torch.load(weights_only=True)`: a file from an untrusted source cannot run code. Everything
descriptive (model config, preprocessing spec, class names, temperature, operating point,
metrics, data hash, code version) is one JSON string, readable without the weights.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from longteng import __version__
from longteng.errors import CheckpointError
from longteng.preprocess import PreprocessSpec

FORMAT = "longteng-checkpoint/1"


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    preprocess: PreprocessSpec
    class_names: list[str]
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest_hash: str = ""
    temperature: float = 1.0
    # longteng.decision.ScoreCalibration.to_dict(); None: fitted before it existed (identity)
    score_calibration: dict[str, float] | None = None
    operating_point: dict[str, Any] | None = None
    epoch: int = 0
    code_version: str = __version__
    # Training state, present in `last` checkpoints only.
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {
            "model_config": self.model_config,
            "preprocess": self.preprocess.to_dict(),
            "class_names": self.class_names,
            "train_config": self.train_config,
            "metrics": self.metrics,
            "manifest_hash": self.manifest_hash,
            "temperature": self.temperature,
            "score_calibration": self.score_calibration,
            "operating_point": self.operating_point,
            "epoch": self.epoch,
            "code_version": self.code_version,
            "extra": self.extra,
        }


def save_checkpoint(checkpoint: Checkpoint, path: Path | str) -> Path:
    """Write atomically: a crash mid-save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "meta": json.dumps(checkpoint.meta(), sort_keys=True),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in checkpoint.state_dict.items()},
    }
    if checkpoint.optimizer_state is not None:
        payload["optimizer"] = checkpoint.optimizer_state
    if checkpoint.scheduler_state is not None:
        payload["scheduler"] = checkpoint.scheduler_state
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: Path | str) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"{path}: not a readable checkpoint (not a torch zip archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any object that could execute code on load. Torch's own message
        # suggests weights_only=False, which is exactly what must not be done with such a file.
        lines = [line.strip() for line in str(exc).splitlines() if "Unsupported" in line or "WeightsUnpickler" in line]
        detail = lines[0].split(" was not an allowed")[0] if lines else "unsupported content"
        raise CheckpointError(f"{path}: refused to load: contains objects that could run code ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a longteng checkpoint (expected format {FORMAT})")
    try:
        meta = json.loads(payload["meta"])
        return Checkpoint(
            state_dict=payload["state_dict"],
            model_config=meta["model_config"],
            preprocess=PreprocessSpec.from_dict(meta["preprocess"]),
            class_names=list(meta["class_names"]),
            train_config=meta.get("train_config", {}),
            metrics=meta.get("metrics", {}),
            manifest_hash=meta.get("manifest_hash", ""),
            temperature=float(meta.get("temperature", 1.0)),
            score_calibration=meta.get("score_calibration"),
            operating_point=meta.get("operating_point"),
            epoch=int(meta.get("epoch", 0)),
            code_version=meta.get("code_version", ""),
            optimizer_state=payload.get("optimizer"),
            scheduler_state=payload.get("scheduler"),
            extra=meta.get("extra", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete ({exc})") from None


def resolve_checkpoint_path(path_or_run: Path | str, which: str = "best") -> Path:
    """Accept a checkpoint file or a run directory (then RUN/<which>.pt)."""
    path = Path(path_or_run)
    if path.is_dir():
        candidate = path / f"{which}.pt"
        if not candidate.is_file():
            raise CheckpointError(f"{path}: run directory has no {which}.pt")
        return candidate
    return path


def build_two_stage(checkpoint: Checkpoint) -> "torch.nn.Module":
    """The two-stage network of a checkpoint, weights loaded, in eval mode."""
    from longteng.model.two_stage import TwoStageConfig, create_two_stage

    return _with_weights(create_two_stage(TwoStageConfig.from_dict(checkpoint.model_config), weights="none"), checkpoint)


def focus_spec_of(checkpoint: Checkpoint) -> "FocusSpec":
    """The crop rule a two-stage checkpoint was trained with."""
    from longteng.focus import FocusSpec

    try:
        return FocusSpec.from_dict(checkpoint.extra["focus"])
    except KeyError:
        raise CheckpointError("two-stage checkpoint without its focus spec (extra.focus)") from None


def build_model(checkpoint: Checkpoint) -> "torch.nn.Module":
    """The network of a checkpoint, weights loaded, in eval mode."""
    from longteng.model.network import ModelConfig, create_model

    return _with_weights(create_model(ModelConfig.from_dict(checkpoint.model_config), weights="none"), checkpoint)


def _with_weights(model: "torch.nn.Module", checkpoint: Checkpoint) -> "torch.nn.Module":
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit its model config ({str(exc).splitlines()[0]})") from None
    return model.eval()
