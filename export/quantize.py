"""Static int8 quantization (QDQ) of an exported model, and the gate that judges it.

Calibration photos go through the project's own loader and normalisation, so the activation
ranges are those of real inspection photos. The gate compares the int8 model with the fp32
one on the validation split: top-1 agreement (required: 99% unless forced) and accuracy.

Modes, measured with bench/bench_int8.py on the demo model (EfficientNet-Lite0, 224 px, an
under-trained fine-tune with many near-ties, 125 val photos, 2 AMD EPYC AVX2 cores without
VNNI; top-1 agreement with fp32, then speed-up over fp32 at batch 1 / batch 16):

* ``u8-per-tensor``: unsigned activations, one scale per weight tensor, every op quantized:
  81.6%, 1.42x / 1.43x.
* ``u8-per-channel-float-ends``: one weight scale per output channel (depthwise convolutions
  have channels of very different ranges); the stem convolution and the head (pooling, linear
  layer, class maps, softmax) stay float32: 96.0%, 1.56x / 1.55x.
* ``u8-7bit-float-ends``: the same with 7-bit weights (``reduce_range``). Without VNNI,
  onnxruntime's u8 x s8 kernels add pairs of products in 16 bits and saturate on full 8-bit
  weights; 7 bits cannot overflow: 98.4%, 1.56x / 1.42x.
* ``u8-7bit-float-ends-percentile`` (default): activation ranges from the 99.999th percentile
  instead of the extremes, so a few outliers do not waste the 256 levels: 99.2%, 1.57x /
  1.35x; calibration takes about 4x longer (100 s for 200 photos).
* ``s8-symmetric``: signed symmetric activations: 90.4%, 0.64x / 0.55x (slower than fp32).

u8 activations with u8 weights agreed 99.2% but ran 5x slower than fp32 (no fast kernel);
dynamic quantization was not pursued (planners measured it 3-4x slower than fp32).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from longteng.errors import CheckpointError, ConfigError
from longteng.inference.metadata import INPUT_NAME
from longteng.preprocess import PreprocessSpec, normalize

MIN_INT8_AGREEMENT = 0.99
CALIBRATION_BATCH = 8
# Ops after the last feature map: global pooling, the linear head, class maps, softmax.
HEAD_OPS = ("ReduceMean", "GlobalAveragePool", "Gemm", "MatMul", "Einsum", "Softmax", "Div")


@dataclass(frozen=True)
class Int8Mode:
    name: str
    per_channel: bool
    signed_activations: bool
    float_stem_and_head: bool
    seven_bit_weights: bool
    percentile_calibration: bool


INT8_MODES = {
    mode.name: mode
    for mode in (
        Int8Mode("u8-per-tensor", per_channel=False, signed_activations=False, float_stem_and_head=False,
                 seven_bit_weights=False, percentile_calibration=False),
        Int8Mode("u8-per-channel-float-ends", per_channel=True, signed_activations=False, float_stem_and_head=True,
                 seven_bit_weights=False, percentile_calibration=False),
        Int8Mode("u8-7bit-float-ends", per_channel=True, signed_activations=False, float_stem_and_head=True,
                 seven_bit_weights=True, percentile_calibration=False),
        Int8Mode("u8-7bit-float-ends-percentile", per_channel=True, signed_activations=False, float_stem_and_head=True,
                 seven_bit_weights=True, percentile_calibration=True),
        Int8Mode("s8-symmetric", per_channel=True, signed_activations=True, float_stem_and_head=True,
                 seven_bit_weights=False, percentile_calibration=False),
    )
}
DEFAULT_INT8_MODE = "u8-7bit-float-ends-percentile"


@dataclass(frozen=True)
class Int8Result:
    mode: str
    n_calibration: int
    n_photos: int  # photos the int8 and fp32 models were compared on
    top1_agreement: float
    fp32_accuracy: float | None  # None when the comparison photos carry no labels
    int8_accuracy: float | None
    minimum_agreement: float = MIN_INT8_AGREEMENT
    forced: bool = False

    @property
    def accuracy_change(self) -> float | None:
        if self.fp32_accuracy is None or self.int8_accuracy is None:
            return None
        return self.int8_accuracy - self.fp32_accuracy

    @property
    def passed(self) -> bool:
        return self.top1_agreement >= self.minimum_agreement

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy_change": self.accuracy_change, "passed": self.passed}


def int8_mode(name: str) -> Int8Mode:
    if name not in INT8_MODES:
        raise ConfigError(f"int8 mode {name!r} unknown; allowed: {', '.join(INT8_MODES)}")
    return INT8_MODES[name]


def quantize_int8(
    fp32_path: Path, out_path: Path, calibration_pixels: np.ndarray, spec: PreprocessSpec, mode: Int8Mode
) -> Path:
    """Write the QDQ int8 version of ``fp32_path`` to ``out_path``, calibrated on uint8 photos."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_pixels) == 0:
        raise ConfigError("int8 calibration needs at least one photo")
    prepared = out_path.with_name(out_path.stem + ".prepared.onnx")
    # Folds constants and infers shapes so the quantizer sees every tensor's type.
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    activation = QuantType.QInt8 if mode.signed_activations else QuantType.QUInt8
    # onnxruntime's calibrators report progress with print(); library code stays silent.
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(prepared), str(out_path), _PixelReader(calibration_pixels, spec),
            quant_format=QuantFormat.QDQ, per_channel=mode.per_channel, reduce_range=mode.seven_bit_weights,
            activation_type=activation, weight_type=QuantType.QInt8,
            nodes_to_exclude=_float_nodes(model) if mode.float_stem_and_head else [],
            calibrate_method=CalibrationMethod.Percentile if mode.percentile_calibration else CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": mode.signed_activations, "WeightSymmetric": True},
        )
    prepared.unlink()
    return out_path


def compare_int8(
    fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray | None, mode: str, n_calibration: int
) -> Int8Result:
    """Agreement of the top classes, and accuracy of both models when ``labels`` are known."""
    if fp32_logits.shape != int8_logits.shape or len(fp32_logits) == 0:
        raise CheckpointError(f"int8 comparison needs matching, non-empty logits, got {fp32_logits.shape} and {int8_logits.shape}")
    fp32_top, int8_top = fp32_logits.argmax(axis=1), int8_logits.argmax(axis=1)
    has_labels = labels is not None and len(labels) == len(fp32_top)
    return Int8Result(
        mode=mode, n_calibration=n_calibration, n_photos=len(fp32_top),
        top1_agreement=float(np.mean(fp32_top == int8_top)),
        fp32_accuracy=float(np.mean(fp32_top == labels)) if has_labels else None,
        int8_accuracy=float(np.mean(int8_top == labels)) if has_labels else None,
    )


def require_int8_agreement(result: Int8Result, force: bool) -> Int8Result:
    """The result marked as forced, or CheckpointError when agreement is too low and not forced."""
    if result.passed:
        return result
    if not force:
        raise CheckpointError(
            f"int8 model agrees with fp32 on only {result.top1_agreement:.2%} of {result.n_photos} validation photos "
            f"(required {result.minimum_agreement:.0%}); export fp32, or pass --force to ship it anyway"
        )
    return Int8Result(**{**asdict(result), "forced": True})


class _PixelReader:
    """onnxruntime's CalibrationDataReader protocol over uint8 photos, in small batches."""

    def __init__(self, pixels: np.ndarray, spec: PreprocessSpec) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {INPUT_NAME: normalize(np.asarray(pixels[start : start + CALIBRATION_BATCH]), spec)}
            for start in range(0, len(pixels), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the stem convolution (raw pixels in) and of every head op."""
    nodes = list(model.graph.node)
    stem = next((node.name for node in nodes if node.op_type == "Conv"), None)
    head = [node.name for node in nodes if node.op_type in HEAD_OPS]
    return [name for name in (stem, *head) if name]
