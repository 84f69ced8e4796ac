"""What an exported model file carries so the runtime never asks anyone to retype it.

Written by export (torch side) into ONNX `metadata_props`, read by the runtime (no torch).
Every value is a string; structured values are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from longteng.decision import OperatingPoint
from longteng.errors import CheckpointError, ConfigError
from longteng.preprocess import PreprocessSpec

FORMAT = "longteng-onnx/1"
INPUT_NAME = "pixels"  # float32 (N, 3, S, S), normalised by longteng.preprocess.normalize
# Graph outputs, in this order. class_maps = head applied at every position of the last
# feature map (N, C, h, w): its spatial mean equals the logits, so heatmaps cost no extra pass.
OUTPUT_NAMES = ("logits", "probabilities", "class_maps", "embedding")


@dataclass(frozen=True)
class UnknownDetector:
    """Out-of-distribution score and the threshold above which a photo is 'unknown' (-> REFER)."""

    method: str
    threshold: float
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelMetadata:
    class_names: list[str]
    preprocess: PreprocessSpec
    temperature: float
    operating_point: OperatingPoint
    unknown: UnknownDetector | None
    model_version: str
    provenance: dict[str, Any]

    def to_props(self) -> dict[str, str]:
        return {
            "longteng.format": FORMAT,
            "longteng.class_names": json.dumps(self.class_names),
            "longteng.preprocess": self.preprocess.to_json(),
            "longteng.temperature": repr(float(self.temperature)),
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
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelMetadata":
        if props.get("longteng.format") != FORMAT:
            raise CheckpointError(f"{source}: not a longteng model file (metadata format {FORMAT} missing)")
        try:
            unknown = json.loads(props["longteng.unknown"])
            return cls(
                class_names=list(json.loads(props["longteng.class_names"])),
                preprocess=PreprocessSpec.from_json(props["longteng.preprocess"]),
                temperature=float(props["longteng.temperature"]),
                operating_point=OperatingPoint.from_dict(json.loads(props["longteng.operating_point"])),
                unknown=None if unknown is None else UnknownDetector(
                    unknown["method"], float(unknown["threshold"]), dict(unknown.get("parameters", {}))
                ),
                model_version=props["longteng.model_version"],
                provenance=json.loads(props["longteng.provenance"]),
            )
        except (KeyError, ValueError, TypeError, ConfigError) as exc:
            raise CheckpointError(f"{source}: incomplete or invalid longteng metadata ({exc})") from None
