"""Load an exported model once and run it: onnxruntime, numpy and Pillow only (no torch)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longteng.errors import CheckpointError, ConfigError
from longteng.inference.metadata import (
    FOCUS_INPUT_NAME, GLANCE_INPUT_NAME, GLANCE_OUTPUT_NAMES, INPUT_NAME, OUTPUT_NAMES, ModelMetadata,
)
from longteng.preprocess import normalize

PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# The most focus crops one onnxruntime run takes: activations grow with the batch.
MAX_FOCUS_BATCH = 32


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int = 0  # 0: onnxruntime's default (all physical cores)
    device: str = "auto"  # auto (CUDA when available, else CPU), cpu or cuda
    # Idle onnxruntime threads spin for a while waiting for work: lowest latency for one
    # photo, but in a pipeline they burn the cores that decoding processes need.
    spin: bool = True


class OnnxModel:
    """One onnxruntime session plus the model's metadata."""

    def __init__(self, path: Path | str, options: RuntimeOptions = RuntimeOptions()) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such model file")
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        if not options.spin:
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), session_options, providers=_providers(options.device, ort))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise CheckpointError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, str(self.path))
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = [name for name in ("logits", "probabilities") if name not in self.output_names]
        if missing:
            raise CheckpointError(f"{self.path}: model lacks output(s) {', '.join(missing)}")

        if self.metadata.two_stage:
            inputs = {i.name for i in self.session.get_inputs()}
            expected = {GLANCE_INPUT_NAME, FOCUS_INPUT_NAME}
            if inputs != expected or any(name not in self.output_names for name in GLANCE_OUTPUT_NAMES):
                raise CheckpointError(f"{self.path}: two-stage metadata, but the graph's inputs are {sorted(inputs)}")
        self._check_against_graph()

    def _check_against_graph(self) -> None:
        """Metadata that parses can still contradict the graph: refuse it, naming the field."""
        source = str(self.path)
        self.metadata.check(source)
        metadata = self.metadata
        sizes = (
            {GLANCE_INPUT_NAME: ("longteng.preprocess.input_size", metadata.preprocess.input_size),
             FOCUS_INPUT_NAME: ("longteng.focus.input_size", metadata.focus.input_size)}
            if metadata.focus is not None else {INPUT_NAME: ("longteng.preprocess.input_size", metadata.preprocess.input_size)}
        )
        for graph_input in self.session.get_inputs():
            field, size = sizes.get(graph_input.name, (None, None))
            if field is None:
                raise CheckpointError(f"{source}: the graph has an unexpected input {graph_input.name!r}")
            fixed = [d for d in graph_input.shape[2:] if isinstance(d, int)]
            channels = graph_input.shape[1] if len(graph_input.shape) == 4 else None
            if len(graph_input.shape) != 4 or (isinstance(channels, int) and channels != 3):
                raise CheckpointError(f"{source}: graph input {graph_input.name!r} has shape {graph_input.shape}, expected (N, 3, H, W)")
            if any(d != size for d in fixed):
                raise CheckpointError(
                    f"{source}: metadata {field} is {size}, but the graph's input {graph_input.name!r} is {graph_input.shape[2:]}"
                )
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        classes = len(metadata.class_names)
        for name in ("logits", "probabilities"):
            width = outputs[name][-1] if outputs[name] else None
            if isinstance(width, int) and width != classes:
                raise CheckpointError(
                    f"{source}: metadata longteng.class_names lists {classes} classes, the graph's {name} has {width}"
                )
        if metadata.unknown is not None:
            from longteng.inference.unknown import check_detector

            embedding = outputs.get("embedding")
            width = embedding[-1] if embedding else None
            check_detector(metadata.unknown, width if isinstance(width, int) else None, source)
        if metadata.registered_products:
            from longteng.inference.registered import check_registered

            embedding = outputs.get("embedding")
            width = embedding[-1] if embedding else None
            check_registered(metadata, width if isinstance(width, int) else None, source)

    def run(self, pixels: np.ndarray, outputs: tuple[str, ...] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
        """uint8 (N, S, S, 3) -> named outputs: single-stage photos from
        longteng.preprocess.load_resized, or a two-stage model's focus crops."""
        wanted = [name for name in outputs if name in self.output_names and name not in GLANCE_OUTPUT_NAMES]
        if not self.metadata.two_stage:
            inputs = normalize(np.asarray(pixels), self.metadata.preprocess)
            return dict(zip(wanted, self.session.run(wanted, {INPUT_NAME: inputs})))
        size = self.metadata.preprocess.input_size
        empty = np.zeros((0, 3, size, size), np.float32)
        pixels = np.asarray(pixels)
        # A batch of opened boxes holds several crops per photo: bound the crops per run, since
        # the focus network's activations grow with them (32 photos of 3.5 items: 2.7 GB).
        chunks = [  # an empty batch still runs once, for outputs of the right shapes
            self.session.run(wanted, {GLANCE_INPUT_NAME: empty, FOCUS_INPUT_NAME: normalize(pixels[start : start + MAX_FOCUS_BATCH], self.metadata.preprocess)})
            for start in range(0, max(len(pixels), 1), MAX_FOCUS_BATCH)
        ]
        return {name: np.concatenate([chunk[k] for chunk in chunks]) for k, name in enumerate(wanted)}

    def run_glance(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, G, G, 3) letterboxed photos -> (objectness (N, h, w), up vectors (N, 2, h, w))."""
        glance = normalize(np.asarray(pixels), self.metadata.preprocess)
        size = self.metadata.focus.input_size  # type: ignore[union-attr]
        empty = np.zeros((0, 3, size, size), np.float32)
        objectness, up = self.session.run(list(GLANCE_OUTPUT_NAMES), {GLANCE_INPUT_NAME: glance, FOCUS_INPUT_NAME: empty})
        return objectness, up


def _providers(device: str, ort) -> list[str]:
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ConfigError("--device cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise ConfigError(f"--device {device!r} unknown; allowed: auto, cpu, cuda")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def default_model_path() -> Path:
    """LONGTENG_MODEL, else the model `make demo` exports."""
    return Path(os.environ.get("LONGTENG_MODEL", "runs/demo/model.onnx"))
