"""Turn a Classifier into an ONNX graph with the runtime's four outputs and a dynamic batch axis.

Exporter: torch's dynamo exporter (``torch.export`` + onnxscript). For timm's
tf_efficientnet_lite0 it folds the TensorFlow 'same' padding into the convolutions and
gives a ~100-node graph of Conv/Clip/Add; the legacy TorchScript exporter keeps that
padding as ~500 shape-arithmetic nodes per batch and ran about 1.9x slower at batch 16 on
CPU. The dynamo exporter writes opset 18 natively and cannot convert this graph down to
17 (onnx has no Pad adapter), so an older opset falls back to the TorchScript exporter.
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

from longteng.errors import CheckpointError
from longteng.inference.metadata import INPUT_NAME, OUTPUT_NAMES
from longteng.model.network import Classifier

DYNAMO = "torch.onnx dynamo"
TORCHSCRIPT = "torch.onnx torchscript"
DYNAMO_MIN_OPSET = 18
BATCH_AXIS = "batch"
# torch.export treats sizes 0 and 1 as special cases; an example batch of 2 keeps the axis symbolic.
_EXAMPLE_BATCH = 2


class ExportGraph(nn.Module):
    """The classifier plus what the runtime needs from one forward pass, in OUTPUT_NAMES order."""

    def __init__(self, classifier: Classifier, temperature: float) -> None:
        super().__init__()
        self.classifier = classifier
        self.temperature = float(temperature)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, feature_map = self.classifier.forward_with_features(pixels)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        class_maps = self.classifier.class_activation_maps(feature_map)
        embedding = feature_map.mean(dim=(2, 3))
        return logits, probabilities, class_maps, embedding


def to_onnx(classifier: Classifier, temperature: float, input_size: int, opset: int) -> tuple[onnx.ModelProto, str, str]:
    """(model, exporter used, why the fallback was taken or "")."""
    graph = ExportGraph(classifier.eval(), temperature).eval()
    example = torch.zeros(_EXAMPLE_BATCH, 3, input_size, input_size)
    fallback_reason = f"opset {opset} < {DYNAMO_MIN_OPSET}, which the dynamo exporter cannot target for this model"
    if opset >= DYNAMO_MIN_OPSET:
        try:
            model, exporter = _export_dynamo(graph, example, opset), DYNAMO
            _check_graph(model, opset)
            return model, exporter, ""
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: try the other one
            fallback_reason = f"dynamo exporter failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    model = _export_torchscript(graph, example, opset)
    _check_graph(model, opset)
    return model, TORCHSCRIPT, fallback_reason


def _export_dynamo(graph: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=65536)
    # verbose=False keeps the exporter from printing its progress; library code stays silent.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, (example,), None, dynamo=True, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            opset_version=opset, dynamic_shapes={"pixels": {0: batch}}, external_data=False, optimize=True,
            verbose=False,
        )
    return program.model_proto


def _export_torchscript(graph: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, (example,), buffer, dynamo=False, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            opset_version=opset, dynamic_axes={name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES)},
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def _check_graph(model: onnx.ModelProto, opset: int) -> None:
    """The contract the runtime relies on: names, a symbolic batch axis, the opset asked for."""
    onnx.checker.check_model(model)
    default_domain = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if default_domain != [opset]:
        raise CheckpointError(f"exported graph has opset {default_domain}, {opset} was asked for")
    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise CheckpointError(f"exported graph has inputs {inputs} and outputs {outputs}, expected {[INPUT_NAME]} and {list(OUTPUT_NAMES)}")
    for value in (*model.graph.input, *model.graph.output):
        batch = value.type.tensor_type.shape.dim[0]
        if not batch.dim_param:
            raise CheckpointError(f"exported graph fixes the batch size of {value.name!r} to {batch.dim_value}")
