"""What an exported model file carries so the runtime never asks anyone to retype it.

Written by export (torch side) into ONNX `metadata_props`, read by the runtime (no torch).
Every value is a string; structured values are JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from longteng.data.layout import AUTHENTICITIES, split_class_name
from longteng.decision import OperatingPoint, ScoreCalibration
from longteng.errors import CheckpointError, ConfigError
from longteng.focus import FocusSpec
from longteng.inference.aligned_check import AlignedCheck
from longteng.inference.artwork_check import ArtworkCheck
from longteng.inference.registered import (
    RegisteredProduct, registered_class_names, registered_from_json, registered_to_json,
)
from longteng.inference.text_check import TextRegistry
from longteng.preprocess import PreprocessSpec

FORMAT = "longteng-onnx/1"
INPUT_NAME = "pixels"  # float32 (N, 3, S, S), normalised by longteng.preprocess.normalize
# Graph outputs, in this order. class_maps = head applied at every position of the last
# feature map (N, C, h, w): its spatial mean equals the logits, so heatmaps cost no extra pass.
OUTPUT_NAMES = ("logits", "probabilities", "class_maps", "embedding")
# A two-stage model is one graph with two inputs; each stage's outputs depend on its own
# input only, so the runtime feeds the other input an empty batch (zero cost).
GLANCE_INPUT_NAME = "glance_pixels"  # float32 (N, 3, G, G): the whole photo, letterboxed
FOCUS_INPUT_NAME = "focus_pixels"  # float32 (N, 3, S, S): upright crops (longteng.focus.focus_crop)
GLANCE_OUTPUT_NAMES = ("glance_objectness", "glance_up")
# Bounds that no model longteng trains comes near; beyond them a value is damage or mischief.
MAX_INPUT_SIZE = 2048
MAX_DECODE_SHORT_SIDE = 8192
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


@dataclass(frozen=True)
class UnknownDetector:
    """Out-of-distribution score and the threshold above which a photo is 'unknown' (-> REFER)."""

    method: str
    threshold: float
    parameters: dict[str, Any] = field(default_factory=dict)


_REQUIRED = object()


def _unknown_detector(text: str) -> UnknownDetector | None:
    data = json.loads(text)
    if data is None:
        return None
    return UnknownDetector(data["method"], float(data["threshold"]), dict(data.get("parameters", {})))


@dataclass(frozen=True)
class ModelMetadata:
    class_names: list[str]
    preprocess: PreprocessSpec
    temperature: float
    operating_point: OperatingPoint
    unknown: UnknownDetector | None
    model_version: str
    provenance: dict[str, Any]
    # Two-stage models: the crop rule, and whether the glance was trained to find products
    # (False: the focus stage sees the whole photo). None: a single-stage model.
    focus: FocusSpec | None = None
    glance_trained: bool = False
    # After the temperature: Platt scaling of the counterfeit score (identity in older files).
    score_calibration: ScoreCalibration = ScoreCalibration()
    # The text check (inference/text_check.py): what genuine print reads like, per product.
    # None: the model reads no print (older files, or exported without references).
    text_registry: TextRegistry | None = None
    # Products registered from genuine photos after training (inference/registered.py).
    registered_products: tuple[RegisteredProduct, ...] = ()
    # The aligned comparison with genuine references (inference/aligned_check.py). None: the
    # model has none (older files, or exported without references).
    aligned_check: AlignedCheck | None = None
    # The artwork check (inference/artwork_check.py): the logo's size, proportions, place beside
    # the other print and ink on genuine references. It measures what the text check reads, so
    # it comes with a text registry. None: older files, or exported without references.
    artwork_check: ArtworkCheck | None = None

    @property
    def two_stage(self) -> bool:
        return self.focus is not None

    @property
    def finds_items(self) -> bool:
        """The glance reports every item of a photo (trained on item boxes), not one product."""
        return self.focus is not None and self.focus.max_items > 1

    @property
    def trained_products(self) -> set[str]:
        """The products the network was trained on (registered ones are not among them)."""
        return {split_class_name(name)[0] for name in self.class_names}

    @property
    def decision_classes(self) -> list[str]:
        """The classes verdicts and probabilities are over: the network's, then two per
        registered product."""
        return self.class_names + registered_class_names(self.registered_products)

    def to_props(self) -> dict[str, str]:
        focus = {} if self.focus is None else {
            "longteng.focus": self.focus.to_json(), "longteng.glance_trained": json.dumps(self.glance_trained),
        }
        return {
            **focus,
            "longteng.format": FORMAT,
            "longteng.class_names": json.dumps(self.class_names),
            "longteng.preprocess": self.preprocess.to_json(),
            "longteng.temperature": repr(float(self.temperature)),
            "longteng.score_calibration": json.dumps(self.score_calibration.to_dict(), sort_keys=True),
            "longteng.operating_point": json.dumps(self.operating_point.to_dict(), sort_keys=True),
            "longteng.unknown": json.dumps(
                None if self.unknown is None else {
                    "method": self.unknown.method, "threshold": self.unknown.threshold,
                    "parameters": self.unknown.parameters,
                },
                sort_keys=True,
            ),
            "longteng.model_version": self.model_version,
            "longteng.provenance": json.dumps(self.provenance, sort_keys=True),
            **({} if self.text_registry is None else {"longteng.text_registry": self.text_registry.to_json()}),
            **({} if self.aligned_check is None else {"longteng.aligned_check": self.aligned_check.to_json()}),
            **({} if self.artwork_check is None else {"longteng.artwork_check": self.artwork_check.to_json()}),
            **({} if not self.registered_products else {
                "longteng.registered_products": registered_to_json(self.registered_products),
            }),
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelMetadata":
        if props.get("longteng.format") != FORMAT:
            raise CheckpointError(f"{source}: not a longteng model file (metadata format {FORMAT} missing)")

        def parse(key: str, convert, default: Any = _REQUIRED) -> Any:
            if key not in props:
                if default is _REQUIRED:
                    raise CheckpointError(f"{source}: metadata {key} is missing")
                return default
            try:
                return convert(props[key])
            except (KeyError, ValueError, TypeError, AttributeError, ConfigError) as exc:
                raise CheckpointError(f"{source}: metadata {key} is invalid ({exc})") from None

        return cls(
            class_names=parse("longteng.class_names", lambda text: list(json.loads(text))),
            preprocess=parse("longteng.preprocess", PreprocessSpec.from_json),
            temperature=parse("longteng.temperature", float),
            operating_point=parse("longteng.operating_point", lambda text: OperatingPoint.from_dict(json.loads(text))),
            unknown=parse("longteng.unknown", _unknown_detector),
            model_version=parse("longteng.model_version", str),
            provenance=parse("longteng.provenance", json.loads),
            focus=parse("longteng.focus", FocusSpec.from_json, None),
            glance_trained=parse("longteng.glance_trained", lambda text: bool(json.loads(text)), False),
            score_calibration=parse(
                "longteng.score_calibration", lambda text: ScoreCalibration.from_dict(json.loads(text)), ScoreCalibration()
            ),
            text_registry=parse("longteng.text_registry", TextRegistry.from_json, None),
            registered_products=parse("longteng.registered_products", registered_from_json, ()),
            aligned_check=parse("longteng.aligned_check", AlignedCheck.from_json, None),
            artwork_check=parse("longteng.artwork_check", ArtworkCheck.from_json, None),
        )

    def check(self, source: str) -> None:
        """Refuse values that parse but would change verdicts silently or blame every photo.

        Each message names the metadata field. The graph-dependent checks (input sizes, class
        count, detector shapes) are in longteng.inference.session, which sees the graph.
        """
        names = self.class_names
        if len(names) < 2 or not all(isinstance(name, str) and name for name in names):
            raise CheckpointError(f"{source}: metadata longteng.class_names must list at least two names, got {names!r}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise CheckpointError(f"{source}: metadata longteng.class_names repeats {', '.join(repeated)}")
        for name in names:
            product, authenticity = split_class_name(name)
            if not product or authenticity not in AUTHENTICITIES:
                raise CheckpointError(
                    f"{source}: metadata longteng.class_names: {name!r} is not '<product>/<{'|'.join(AUTHENTICITIES)}>'"
                )
        if not (math.isfinite(self.temperature) and MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE):
            raise CheckpointError(
                f"{source}: metadata longteng.temperature must lie in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}], got {self.temperature!r}"
            )
        spec = self.preprocess
        if spec.input_size > MAX_INPUT_SIZE:
            raise CheckpointError(f"{source}: metadata longteng.preprocess.input_size {spec.input_size} exceeds {MAX_INPUT_SIZE}")
        for key, values, low, high in (("mean", spec.mean, 0.0, 1.0), ("std", spec.std, 1e-3, 10.0)):
            if not all(math.isfinite(v) and low <= v <= high for v in values):
                raise CheckpointError(
                    f"{source}: metadata longteng.preprocess.{key} must be three numbers in [{low}, {high}], got {list(values)}"
                )
        if self.focus is not None and self.focus.decode_short_side > MAX_DECODE_SHORT_SIDE:
            raise CheckpointError(
                f"{source}: metadata longteng.focus.decode_short_side {self.focus.decode_short_side} exceeds {MAX_DECODE_SHORT_SIDE}"
            )
        known = self.trained_products | {p.name for p in self.registered_products}
        for key, detector, what in (("longteng.text_registry", self.text_registry, "reads"),
                                    ("longteng.aligned_check", self.aligned_check, "compares"),
                                    ("longteng.artwork_check", self.artwork_check, "measures")):
            if detector is None:
                continue
            if self.focus is None:
                raise CheckpointError(f"{source}: metadata {key} needs a two-stage model (it {what} the focus crop)")
            strangers = sorted(set(detector.products) - known)
            if strangers:
                raise CheckpointError(f"{source}: metadata {key} names products the model does not know: {', '.join(strangers)}")
        if self.artwork_check is not None and self.text_registry is None:
            raise CheckpointError(f"{source}: metadata longteng.artwork_check needs longteng.text_registry (it measures what OCR reads)")
        if not isinstance(self.model_version, str) or not self.model_version.strip():
            raise CheckpointError(f"{source}: metadata longteng.model_version is empty")
