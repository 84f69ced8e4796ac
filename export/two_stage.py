"""Export a two-stage checkpoint: one ONNX graph with the glance and the focus side by side.

The graph has two inputs (``glance_pixels``, ``focus_pixels``) and the outputs of both
stages; each output depends on one input only, and the runtime feeds the other input an
empty batch, so one file serves both calls at no extra cost. The frozen trunk's weights are
stored once. The parity gate runs the whole path twice, through the runtime's own decoding,
glance, box and crop functions: once on onnxruntime, once on the PyTorch checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from longteng.errors import CheckpointError
from longteng.focus import GlanceFrame, box_from_maps, focus_crop, polygon_iou
from longteng.inference.metadata import FOCUS_INPUT_NAME, GLANCE_INPUT_NAME, GLANCE_OUTPUT_NAMES, OUTPUT_NAMES
from longteng.inference.two_stage import prepare_photo
from longteng.model.checkpoint import Checkpoint, build_two_stage, focus_spec_of
from longteng.model.two_stage import TwoStageModel
from longteng.preprocess import normalize

MAX_LOGIT_DIFFERENCE = 1e-3
_EXAMPLE_BATCH = 2


class TwoStageGraph(nn.Module):
    def __init__(self, model: TwoStageModel, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, glance_pixels: torch.Tensor, focus_pixels: torch.Tensor):
        objectness, up = self.model.glance(glance_pixels)
        logits, maps, embedding = self.model.focus(focus_pixels)
        return logits, torch.softmax(logits / self.temperature, dim=1), maps, embedding, torch.sigmoid(objectness), up


def two_stage_to_onnx(checkpoint: Checkpoint, opset: int) -> onnx.ModelProto:
    graph = TwoStageGraph(build_two_stage(checkpoint), checkpoint.temperature).eval()
    glance_size, focus_size = checkpoint.preprocess.input_size, focus_spec_of(checkpoint).input_size
    examples = (torch.zeros(_EXAMPLE_BATCH, 3, glance_size, glance_size), torch.zeros(_EXAMPLE_BATCH, 3, focus_size, focus_size))
    glance_batch = torch.export.Dim("glance_batch", min=0, max=65536)
    focus_batch = torch.export.Dim("focus_batch", min=0, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, examples, None, dynamo=True, input_names=[GLANCE_INPUT_NAME, FOCUS_INPUT_NAME],
            output_names=[*OUTPUT_NAMES, *GLANCE_OUTPUT_NAMES], opset_version=opset,
            dynamic_shapes={"glance_pixels": {0: glance_batch}, "focus_pixels": {0: focus_batch}},
            external_data=False, optimize=True, verbose=False,
        )
    model = program.model_proto
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class TwoStageParity:
    n_photos: int
    max_abs_logit_difference: float
    top1_agreement: float
    min_box_iou: float  # ONNX glance box vs PyTorch glance box
    tolerance: float = MAX_LOGIT_DIFFERENCE

    @property
    def passed(self) -> bool:
        return self.max_abs_logit_difference <= self.tolerance and self.top1_agreement == 1.0 and self.min_box_iou >= 0.99

    def to_dict(self) -> dict:
        return {
            "n_photos": self.n_photos, "max_abs_logit_difference": self.max_abs_logit_difference,
            "top1_agreement": self.top1_agreement, "min_box_iou": self.min_box_iou,
            "tolerance": self.tolerance, "passed": self.passed, "path": "decode -> glance -> box -> crop -> focus",
        }


@torch.inference_mode()
def two_stage_parity(onnx_path: Path, checkpoint: Checkpoint, photo_paths: Sequence[Path]) -> TwoStageParity:
    """The whole runtime path on onnxruntime vs the same path on the PyTorch checkpoint."""
    from longteng.inference.session import OnnxModel, RuntimeOptions
    from longteng.inference.two_stage import focus_inputs

    if not photo_paths:
        raise CheckpointError("the parity gate needs at least one photo")
    runtime = OnnxModel(onnx_path, RuntimeOptions(device="cpu"))
    model = build_two_stage(checkpoint)
    spec, focus = checkpoint.preprocess, focus_spec_of(checkpoint)
    glance_trained = bool(checkpoint.extra.get("glance_trained", True))
    worst, agree, lowest_iou = 0.0, 0, 1.0
    for path in photo_paths:
        prepared = prepare_photo(Path(path), runtime.metadata)
        crops, views = focus_inputs(runtime, [prepared])
        onnx_logits = runtime.run(crops, ("logits",))["logits"][0].astype(np.float64)
        box = None
        if glance_trained:
            objectness, up = model.glance(torch.from_numpy(normalize(prepared.glance[None], spec)))
            frame = GlanceFrame.of(prepared.photo.image.size, spec)
            box = box_from_maps(torch.sigmoid(objectness)[0].numpy(), up[0].numpy(), frame, spec.input_size)
        onnx_box = views[0].box
        if (box is None) != (onnx_box is None):
            lowest_iou = 0.0
        elif box is not None and onnx_box is not None:
            lowest_iou = min(lowest_iou, polygon_iou(box.corners(), onnx_box.corners()))
        # The focus graph on the very crop the runtime cut (float noise in the glance moves
        # a box by a hair, which the IoU above bounds), and the whole PyTorch path's verdict.
        same_crop = model.focus(torch.from_numpy(normalize(crops, spec)))[0][0].numpy().astype(np.float64)
        worst = max(worst, float(np.abs(onnx_logits - same_crop).max()))
        own_crop = focus_crop(prepared.photo.image, box, focus, spec.pad_color)
        torch_logits = model.focus(torch.from_numpy(normalize(own_crop[None], spec)))[0][0].numpy()
        agree += int(onnx_logits.argmax() == torch_logits.argmax())
    return TwoStageParity(len(photo_paths), worst, agree / len(photo_paths), lowest_iou)


def require_two_stage_parity(result: TwoStageParity) -> None:
    if not result.passed:
        raise CheckpointError(
            f"two-stage export parity failed on {result.n_photos} photos: max |logit difference| "
            f"{result.max_abs_logit_difference:.3g} (allowed {result.tolerance:g}), top-1 agreement "
            f"{result.top1_agreement:.2%}, lowest box IoU {result.min_box_iou:.3f} (required 0.99); the ONNX file was not written"
        )
