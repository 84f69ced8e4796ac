"""Rewrite an exported model's metadata into a new file, graph untouched (no torch).

`reference add` changes what a model knows without retraining it: the same graph, new
metadata. Written atomically, so a crash never leaves half a model where a good one was.
"""

from __future__ import annotations

import os
from pathlib import Path

from longteng.errors import ConfigError, OutputError


def write_with_metadata(source: Path, target: Path, metadata) -> Path:
    """`source`'s graph with `metadata` (a ModelMetadata) as its metadata, written to `target`."""
    import onnx  # a dependency of the runtime only for this: loading a model needs onnxruntime alone

    target = Path(target)
    if target.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {target}: the model file name must end in .onnx")
    model = onnx.load(str(source), load_external_data=False)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata.to_props())
    temporary = target.with_name(target.name + ".tmp")
    try:
        onnx.save_model(model, str(temporary), save_as_external_data=False)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"{target}: cannot write the model ({exc.strerror or exc})") from exc
    return target
