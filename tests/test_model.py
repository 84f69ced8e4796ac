"""The classifier network, the backbone registry and loading weights from local files."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from longteng.errors import CheckpointError, ConfigError
from longteng.model.backbones import BACKBONES, backbone_spec, create_backbone
from longteng.model.network import Classifier, ModelConfig, create_model, grow_head

SMALL = 64  # keeps every forward pass fast; all registered backbones reduce it 32x to 2x2


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_batch(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SMALL, SMALL, generator=seeded(seed)) * 2 - 1


@pytest.fixture(scope="module")
def lite0_model() -> Classifier:
    torch.manual_seed(0)
    return create_model(ModelConfig(num_classes=3, drop_rate=0.5), weights="none")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_forward_shapes(name):
    model = create_model(ModelConfig(backbone=name, num_classes=3), weights="none").eval()
    channels = BACKBONES[name].feature_channels
    with torch.no_grad():
        logits, feature_map = model.forward_with_features(small_batch())
        backbone_out = model.backbone(small_batch())
    assert logits.shape == (2, 3)
    assert feature_map.shape == (2, channels, SMALL // 32, SMALL // 32)
    # The bare backbone's forward is the same feature map (no pooling, no head left in it).
    assert backbone_out.shape == feature_map.shape
    assert model.backbone.num_features == channels


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_preprocessing_is_what_the_pretrained_weights_expect(name):
    spec = backbone_spec(name)
    timm_cfg = timm.create_model(spec.timm_name, pretrained=False).pretrained_cfg
    assert spec.preprocess.mean == pytest.approx(timm_cfg["mean"])
    assert spec.preprocess.std == pytest.approx(timm_cfg["std"])
    assert spec.preprocess.interpolation == timm_cfg["interpolation"]
    assert spec.preprocess.input_size == timm_cfg["input_size"][-1]
    assert spec.head_prefix == timm_cfg["classifier"] + "."


def test_class_activation_maps_average_to_the_logits(lite0_model):
    lite0_model.eval()  # dropout (p=0.5 here) is off at inference, where the identity is used
    with torch.no_grad():
        logits, feature_map = lite0_model.forward_with_features(small_batch(3))
        maps = lite0_model.class_activation_maps(feature_map)
        by_hand = torch.einsum("kc,nchw->nkhw", lite0_model.head.weight, feature_map)
    assert maps.shape == (3, 3, SMALL // 32, SMALL // 32)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps - by_hand, lite0_model.head.bias[None, :, None, None].expand_as(maps))


def batch_norms(module: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_freeze_backbone_trains_only_the_head_and_keeps_bn_statistics():
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="resnet18", num_classes=3), weights="none")
    model.freeze_backbone(True)
    model.train()
    first_bn = batch_norms(model.backbone)[0]
    stats_before = first_bn.running_mean.clone()
    model(small_batch(4)).sum().backward()

    assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    assert not any(bn.training for bn in batch_norms(model.backbone))
    assert model.training and model.head.training
    torch.testing.assert_close(first_bn.running_mean, stats_before, atol=0, rtol=0)

    model.freeze_backbone(False)
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert all(bn.training for bn in batch_norms(model.backbone))
    model(small_batch(4)).sum().backward()
    assert not torch.equal(first_bn.running_mean, stats_before)
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_grow_head_keeps_known_classes_by_name(lite0_model):
    old = ["phone_genuine", "phone_fake", "drone_genuine"]
    new = ["drone_genuine", "usb_genuine", "phone_genuine", "phone_fake"]
    torch.manual_seed(1)
    grown = grow_head(lite0_model, old, new)

    assert grown.num_classes == 4
    assert grown.backbone is lite0_model.backbone
    for new_row, name in enumerate(new):
        if name in old:
            assert torch.equal(grown.head.weight[new_row], lite0_model.head.weight[old.index(name)])
            assert torch.equal(grown.head.bias[new_row], lite0_model.head.bias[old.index(name)])
    fresh = grown.head.weight[new.index("usb_genuine")]
    assert not any(torch.allclose(fresh, row) for row in lite0_model.head.weight)

    # The point of it: every known class scores the same as before, whatever its new position.
    lite0_model.eval()
    grown.eval()
    with torch.no_grad():
        before, after = lite0_model(small_batch()), grown(small_batch())
    for name in old:
        torch.testing.assert_close(after[:, new.index(name)], before[:, old.index(name)], atol=1e-6, rtol=0)


def test_grow_head_keeps_the_frozen_state(lite0_model):
    lite0_model.freeze_backbone(True)
    try:
        grown = grow_head(lite0_model, ["a", "b", "c"], ["a", "b", "c", "d"])
        grown.train()
        assert grown.backbone_frozen and not any(bn.training for bn in batch_norms(grown.backbone))
    finally:
        lite0_model.freeze_backbone(False)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (["a", "b", "c"], ["a", "c", "d"], "missing from the new class list: b"),
        (["a", "b", "a"], ["a", "b"], "old class list repeats: a"),
        (["a", "b", "c"], ["a", "b", "c", "c"], "new class list repeats: c"),
        (["a", "b"], ["a", "b", "c"], "3 classes but 2 old class names"),
    ],
)
def test_grow_head_refuses_unclear_class_lists(lite0_model, old, new, message):
    with pytest.raises(ConfigError, match=message):
        grow_head(lite0_model, old, new)


def test_grow_head_drops_classes_only_when_asked(lite0_model):
    grown = grow_head(lite0_model, ["a", "b", "c"], ["c", "a"], allow_dropping=True)
    assert torch.equal(grown.head.weight, lite0_model.head.weight[[2, 0]])


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        create_backbone("vit_giant")
    for name in BACKBONES:
        assert name in str(caught.value)
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        ModelConfig(backbone="vit_giant")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_classes": 1}, "at least 2 classes"),
        ({"drop_rate": 1.0}, "drop_rate"),
        ({"num_classes": 6, "dropout": 0.1}, "unknown model config keys: dropout"),
    ],
)
def test_model_config_refuses_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(values)


def test_model_config_round_trips():
    config = ModelConfig(backbone="resnet18", num_classes=4, drop_rate=0.1)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_package_weights_exist_only_for_lite0():
    with pytest.raises(ConfigError, match="no offline package weights"):
        create_backbone("resnet18", weights="package")


# --- local weight files --------------------------------------------------------------------


def timm_checkpoint(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A full timm model's state dict, head included, as a downloaded checkpoint would be."""
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=10).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_local_timm_file_fills_the_backbone(tmp_path, suffix):
    state = timm_checkpoint("mobilenetv2_100", seed=3)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    backbone, _ = create_backbone("mobilenetv2_100", weights=path)
    loaded = backbone.state_dict()
    assert set(state) - set(loaded) == {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(loaded[key], state[key]) for key in loaded)


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(CheckpointError, match="nowhere.safetensors: weights file not found"):
        create_model(ModelConfig(backbone="resnet18"), weights=missing)
    # A misspelt keyword is a path that does not exist; the message lists the keywords.
    with pytest.raises(CheckpointError, match="default, none, package, hub"):
        create_backbone("resnet18", weights="defualt")


def test_incomplete_or_foreign_file_is_refused_by_name(tmp_path):
    state = timm_checkpoint("resnet18", seed=4)
    path = tmp_path / "resnet18.pth"
    torch.save({k: v for k, v in state.items() if k != "layer3.1.bn2.running_var"}, path)
    with pytest.raises(CheckpointError, match=r"without a source: layer3\.1\.bn2\.running_var"):
        create_backbone("resnet18", weights=path)
    # resnet18's tensors do not fit mobilenetv2: refused, never half-loaded.
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"no place in the model: conv1\.weight"):
        create_backbone("mobilenetv2_100", weights=path)


class NotATensor:
    pass


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip or pickle at all", "cannot read weights"),
        ({"conv1.weight": "a string"}, "not a flat state dict"),
        ({"conv1.weight": NotATensor()}, "cannot read weights"),  # weights_only refuses code
    ],
)
def test_unreadable_or_unsafe_file_is_refused(tmp_path, content, message):
    path = tmp_path / "weights.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        create_backbone("resnet18", weights=path)
