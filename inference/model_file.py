"""Write a model file: the graph with a ModelMetadata as its metadata, atomically (no torch).

Export writes every model through here, and `reference add` rewrites a model's metadata
through here without retraining it: the same graph, new metadata. Written atomically, so a
crash never leaves half a model where a good one was.
"""

from __future__ import annotations

import os
from pathlib import Path

from longteng.errors import ConfigError, OutputError


def check_model_out(out: Path) -> Path:
    """--out of a command that writes a model: refused before any work is done."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {out}: the model file name must end in .onnx")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; name the .onnx file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def save_with_metadata(model, metadata, path: Path) -> Path:
    """`model` (an onnx.ModelProto) with `metadata` (a ModelMetadata) in one self-contained file."""
    import onnx  # a runtime dependency only for writing: loading a model needs onnxruntime alone

    path = Path(path)
    onnx.helper.set_model_props(model, metadata.to_props())  # replaces any earlier metadata
    temporary = path.with_name(path.name + ".tmp")
    try:
        onnx.save_model(model, str(temporary), save_as_external_data=False)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the model ({exc.strerror or exc})") from exc
    return path


def write_with_metadata(source: Path, target: Path, metadata) -> Path:
    """`source`'s graph with `metadata` as its metadata, written to `target`."""
    import onnx

    return save_with_metadata(onnx.load(str(source), load_external_data=False), metadata, check_model_out(target))
