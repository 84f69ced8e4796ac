"""The classifier network: a registered backbone, global average pooling, one linear head.

The head is linear on the spatially averaged feature map, so the class activation map of
class k is exactly ``head.weight[k] @ feature_map + head.bias[k]`` at every position, and
its spatial mean is the logit of class k:

    logits = W · mean_hw(F) + b = mean_hw(W · F + b)

Export relies on this identity to ship heatmaps that add up to the decision, with no
gradient tricks: ``Classifier.class_activation_maps`` computes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longteng.errors import ConfigError
from longteng.model.backbones import DEFAULT_BACKBONE, WEIGHTS_DEFAULT, backbone_spec, create_backbone


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = DEFAULT_BACKBONE
    num_classes: int = 6
    drop_rate: float = 0.2

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)  # ConfigError listing the known names
        if self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate must lie in [0, 1), got {self.drop_rate}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "num_classes" in values:
            values["num_classes"] = int(values["num_classes"])
        if "drop_rate" in values:
            values["drop_rate"] = float(values["drop_rate"])
        return cls(**values)


class Classifier(nn.Module):
    """backbone -> feature map (N, C, h, w) -> global average -> dropout -> linear head."""

    def __init__(self, backbone: nn.Module, feature_channels: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(feature_channels, num_classes)
        self.backbone_frozen = False

    @property
    def feature_channels(self) -> int:
        return self.head.in_features

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, K), feature map (N, C, h, w) before pooling)."""
        feature_map = self.backbone.forward_features(x)
        pooled = feature_map.mean(dim=(2, 3))
        return self.head(self.dropout(pooled)), feature_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]

    def class_activation_maps(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, K, h, w); the spatial mean of map k is logit k (in eval mode)."""
        maps = torch.einsum("kc,nchw->nkhw", self.head.weight, feature_map)
        return maps + self.head.bias[None, :, None, None]

    def freeze_backbone(self, frozen: bool) -> None:
        """Train only the head (frozen) or everything.

        A frozen backbone also keeps its BatchNorm statistics: they stay in eval mode even
        when the model trains, otherwise a few batches of new photos would shift ImageNet
        statistics under weights that cannot adapt to them.
        """
        self.backbone_frozen = frozen
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self


def create_model(config: ModelConfig, weights: str | Path = WEIGHTS_DEFAULT) -> Classifier:
    """The one factory for training, evaluation and tests; ``weights`` as in create_backbone."""
    backbone, spec = create_backbone(config.backbone, weights)
    return Classifier(backbone, spec.feature_channels, config.num_classes, config.drop_rate)


def grow_head(
    model: Classifier, old_classes: list[str], new_classes: list[str], *, allow_dropping: bool = False
) -> Classifier:
    """A classifier for ``new_classes`` that keeps what ``model`` learnt about ``old_classes``.

    Head rows are matched by class NAME, so the order may change; classes new to the list
    get freshly initialised rows. A known class missing from ``new_classes`` raises
    ConfigError unless ``allow_dropping``: retraining on a dataset that lost a folder should
    stop the run, not silently forget a product. The backbone module is shared with
    ``model``, not copied; keep training the returned classifier only.
    """
    for label, classes in (("old", old_classes), ("new", new_classes)):
        duplicates = sorted({name for name in classes if classes.count(name) > 1})
        if duplicates:
            raise ConfigError(f"{label} class list repeats: {', '.join(duplicates)}")
    if len(old_classes) != model.num_classes:
        raise ConfigError(
            f"the model has {model.num_classes} classes but {len(old_classes)} old class names were given"
        )
    dropped = [name for name in old_classes if name not in new_classes]
    if dropped and not allow_dropping:
        raise ConfigError(
            f"classes missing from the new class list: {', '.join(dropped)} (pass allow_dropping to drop them)"
        )
    if len(new_classes) < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {len(new_classes)}")

    grown = Classifier(model.backbone, model.feature_channels, len(new_classes), model.dropout.p)
    grown.head.to(device=model.head.weight.device, dtype=model.head.weight.dtype)
    old_rows = {name: row for row, name in enumerate(old_classes)}
    with torch.no_grad():
        for new_row, name in enumerate(new_classes):
            if name in old_rows:
                grown.head.weight[new_row] = model.head.weight[old_rows[name]]
                grown.head.bias[new_row] = model.head.bias[old_rows[name]]
    grown.freeze_backbone(model.backbone_frozen)
    grown.train(model.training)
    return grown
