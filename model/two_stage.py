"""The two-stage network: a glance that finds the product, a focus that reads it.

Both stages share one frozen ImageNet trunk (an EfficientNet-Lite's stem and its first
`trunk_blocks` blocks: stride 8 for 3, 16 for 4 or 5). Frozen on purpose: its features of every training photo are computed once and
cached, which is what makes a 384 px focus stage affordable on two CPU cores; only what
comes after it trains.

* glance: trunk(whole photo, letterboxed small) -> (a trunk of 4 blocks: a frozen copy of
  block 4, so the glance always reads five blocks deep) -> a 3x3 conv head -> per cell
  objectness and the product's up vector (longteng.focus.box_from_maps turns them into a box).
* focus: trunk(upright product crop) -> the remaining blocks (4-6 by default) and the 1x1
  conv head (fine-tuned) -> a linear head at every position (class maps) -> pooled into logits.

Pooling (`TwoStageConfig.pooling`): ``avg`` (the default), ``lse`` (log-sum-exp, a smooth
maximum that lets one region decide), ``max`` and ``topk``. Measured on the same data and
settings (README, Measured), the mean beat the smooth maximum: the last feature map's cells
see most of the product (large receptive fields), so local evidence is already in every cell,
and the mean trains more stably from few photos.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from longteng.errors import ConfigError
from longteng.model.backbones import WEIGHTS_DEFAULT, create_backbone

POOLINGS = ("avg", "max", "topk", "lse")
# Output channels of the stem + blocks 0..k-1, per backbone and trunk depth allowed (3: stride
# 8; 4 and 5: stride 16). Lite1 is Lite0 deeper; Lite2 is also wider.
TRUNK_CHANNELS = {
    "efficientnet_lite0": {3: 40, 4: 80, 5: 112},
    "efficientnet_lite1": {3: 40, 4: 80, 5: 112},
    "efficientnet_lite2": {3: 48, 4: 88, 5: 120},
}
FOCUS_CHANNELS = 1280  # every Lite's conv_head
GLANCE_DEPTH = 5  # the glance reads the features after this many blocks, whatever the trunk
GLANCE_OUTPUTS = 3  # objectness logit, up_x, up_y


@dataclass(frozen=True)
class TwoStageConfig:
    backbone: str = "efficientnet_lite0"
    num_classes: int = 6
    pooling: str = "avg"
    lse_sharpness: float = 4.0  # r in (1/r) log mean exp(r x): 0 -> mean, inf -> max
    topk_fraction: float = 0.05
    drop_rate: float = 0.2
    glance_hidden: int = 64
    # Frozen, cached: the stem and this many blocks. 5 is what checkpoints written before the
    # field existed were trained with; what training uses is TrainConfig.trunk_blocks.
    trunk_blocks: int = 5

    def __post_init__(self) -> None:
        if self.backbone not in TRUNK_CHANNELS:
            raise ConfigError(
                f"the two-stage model supports backbones {', '.join(TRUNK_CHANNELS)}, got {self.backbone!r}"
            )
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} unknown; allowed: {', '.join(POOLINGS)}")
        if self.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate must lie in [0, 1), got {self.drop_rate}")
        if self.trunk_blocks not in TRUNK_CHANNELS[self.backbone]:
            raise ConfigError(
                f"trunk_blocks must be one of {sorted(TRUNK_CHANNELS[self.backbone])}, got {self.trunk_blocks}"
            )
        if self.lse_sharpness <= 0 or not 0 < self.topk_fraction <= 1:
            raise ConfigError("lse_sharpness must be positive and topk_fraction in (0, 1]")

    @property
    def trunk_channels(self) -> int:
        return TRUNK_CHANNELS[self.backbone][self.trunk_blocks]

    @property
    def glance_channels(self) -> int:
        return TRUNK_CHANNELS[self.backbone][GLANCE_DEPTH]

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": "two_stage", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TwoStageConfig":
        values = {k: v for k, v in data.items() if k != "architecture"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


def pool_maps(maps: torch.Tensor, config: TwoStageConfig) -> torch.Tensor:
    """(N, K, h, w) class maps -> (N, K) logits."""
    flat = maps.flatten(2)
    if config.pooling == "avg":
        return flat.mean(2)
    if config.pooling == "max":
        return flat.amax(2)
    if config.pooling == "topk":
        k = max(1, int(math.ceil(config.topk_fraction * flat.shape[2])))
        return flat.topk(k, dim=2).values.mean(2)
    r = config.lse_sharpness
    return (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r


class TwoStageModel(nn.Module):
    def __init__(self, backbone: nn.Module, config: TwoStageConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = nn.Sequential(backbone.conv_stem, backbone.bn1, *backbone.blocks[: config.trunk_blocks])
        # The glance always reads the features of the first five blocks: a shallower trunk (so
        # that the focus stage fine-tunes more blocks) keeps a frozen copy of the blocks in
        # between for the glance, whose boxes lost accuracy on four blocks' features (IoU >= 0.7
        # on 91% of photos against 96%).
        self.glance_neck = copy.deepcopy(nn.Sequential(*backbone.blocks[config.trunk_blocks : GLANCE_DEPTH]))
        self.glance_head = nn.Sequential(
            nn.Conv2d(config.glance_channels, config.glance_hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.glance_hidden, GLANCE_OUTPUTS, 1),
        )
        self.tail = nn.Sequential(*backbone.blocks[config.trunk_blocks :], backbone.conv_head, backbone.bn2)
        self.dropout = nn.Dropout2d(config.drop_rate)
        self.class_head = nn.Conv2d(FOCUS_CHANNELS, config.num_classes, 1)
        for parameter in [*self.trunk.parameters(), *self.glance_neck.parameters()]:
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> "TwoStageModel":
        super().train(mode)
        self.trunk.eval()  # frozen: its BatchNorm statistics stay ImageNet's
        self.glance_neck.eval()
        return self

    # --- glance
    def glance_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """What the glance head reads (frozen: training caches it)."""
        return self.glance_neck(self.trunk(pixels))

    def glance_from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """glance features -> (objectness logits (N, h, w), up vectors (N, 2, h, w))."""
        out = self.glance_head(features)
        return out[:, 0], out[:, 1:]

    def glance(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.glance_from_features(self.glance_features(pixels))

    # --- focus
    def focus_from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """trunk features -> (logits (N, K), class maps (N, K, h, w), embedding (N, C))."""
        feature_map = self.tail(features)
        maps = self.class_head(self.dropout(feature_map))
        return pool_maps(maps, self.config), maps, feature_map.mean(dim=(2, 3))

    def focus(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.focus_from_features(self.trunk(pixels))

    def trainable_parameters(self, stage: str) -> list[nn.Parameter]:
        if stage == "glance":
            return list(self.glance_head.parameters())
        if stage == "head":
            return list(self.class_head.parameters())
        return list(self.tail.parameters()) + list(self.class_head.parameters())


def create_two_stage(config: TwoStageConfig, weights: str = WEIGHTS_DEFAULT) -> TwoStageModel:
    backbone, _ = create_backbone(config.backbone, weights)
    return TwoStageModel(backbone, config)
