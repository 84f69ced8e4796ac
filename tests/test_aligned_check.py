"""The aligned comparison with genuine references (inference/aligned_check.py) on items the
generator draws: registration undoes the glance's error, a changed place stands out against
genuine items of other serials and lighting, and the bank survives its trip through metadata."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from longteng.data.synth.designs import genuine_design
from longteng.data.synth.render import render_product
from longteng.data.synth.tells import TellInstance, apply_tells
from longteng.errors import ConfigError
from longteng.export.aligned_fit import fit_added_evidence, fit_logistic
from longteng.inference.aligned_check import (
    FEATURES, MIN_CORRELATION, AlignedCheck, ProductReferences, aligned_scores, apply_aligned_check, compare, edge_map, register,
)

SIZE = 192  # the check's own size (DEFAULT_SIZE)
LONG_SIDE = 154  # the item's length in the crop: 1 / (1 + 2 * 0.12) of it, as focus_crop frames it
CLASSES = ["smartphone/counterfeit", "smartphone/genuine"]


def crop_of(design, seed: int, angle: float = 0.0, shift=(0.0, 0.0), gain: float = 1.0) -> np.ndarray:
    """The item drawn upright at the crop's scale, turned, moved and lit differently."""
    sprite = render_product(design, LONG_SIDE, np.random.default_rng(seed)).rotate(angle, Image.BICUBIC, expand=True)
    canvas = Image.new("RGB", (SIZE, SIZE), (96, 92, 88))
    x = int(round((SIZE - sprite.width) / 2 + shift[0]))
    y = int(round((SIZE - sprite.height) / 2 + shift[1]))
    canvas.paste(sprite, (x, y), sprite)
    return np.clip(np.asarray(canvas, dtype=np.float32) * gain, 0, 255).astype(np.uint8)


def genuine(seed: int):
    """A genuine smartphone of one colourway (its serial and tolerances vary with the seed)."""
    rng = np.random.default_rng(seed)
    while True:
        design = genuine_design("smartphone", rng)
        if design.colourway == "graphite":
            return design


def jittered(design, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return crop_of(design, seed, float(rng.uniform(-8, 8)), tuple(rng.uniform(-3, 3, size=2)), float(rng.uniform(0.85, 1.15)))


@pytest.fixture(scope="module")
def references() -> ProductReferences:
    crops = np.stack([jittered(genuine(seed), seed) for seed in range(14)])
    return ProductReferences.build(crops, [genuine(0).width] * len(crops))


def test_registration_undoes_the_glance_turn_and_shift(references):
    design = genuine(100)
    upright = crop_of(design, 100)
    upright_registered = register(upright, references.template).pixels.astype(float)
    for angle in (20.0, 180.0):  # a box a little off, and "up" pointing the wrong way
        moved = crop_of(design, 100, angle, (4.0, -3.0))
        registration = register(moved, references.template)
        assert registration.correlation > MIN_CORRELATION
        inside = np.s_[30:-30, 60:-60]
        before = np.abs(moved.astype(float) - upright)[inside].mean()
        after = np.abs(registration.pixels.astype(float) - upright_registered)[inside].mean()
        assert after < before / 4, (angle, before, after)


@pytest.mark.parametrize("tell", ["logo_misplace", "glyph_swap", "cert_mark"])
def test_a_changed_place_stands_out_against_genuine_items_and_is_boxed(references, tell):
    index = FEATURES.index("edge_top1")
    genuine_values = [compare(references, jittered(genuine(seed), seed)).features[index] for seed in range(200, 206)]
    for seed in range(300, 303):
        design = genuine(seed)
        fake = apply_tells(design, [TellInstance(tell, 1.0, 1.0, seed)])
        comparison = compare(references, jittered(fake, seed))
        assert comparison.features[index] > max(genuine_values), (tell, comparison.features[index], genuine_values)
        # The box lies where the copy differs from its own genuine twin, drawn the same way.
        difference = np.abs(jittered(fake, seed).astype(float) - jittered(design, seed)).max(axis=2) > 40
        assert comparison.region is not None
        x0, y0, x1, y1 = (int(round(v)) for v in comparison.region)
        assert difference[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1].any(), (tell, comparison.region)


@pytest.fixture(scope="module")
def fitted_check(references) -> AlignedCheck:
    rows = [compare(references, jittered(genuine(seed), seed)).features for seed in range(400, 406)]
    rows += [compare(references, jittered(apply_tells(genuine(seed), [TellInstance("logo_misplace", 1.0, 1.0, seed)]), seed)).features
             for seed in range(500, 506)]
    weights, bias, mean, std = fit_logistic(np.array(rows), np.array([0] * 6 + [1] * 6))
    return AlignedCheck({"smartphone": references}, weights, bias, mean, std, fusion=(1.0, 0.5, 0.0), fires_above=0.0)


def test_the_bank_survives_the_metadata_and_scores_alike(fitted_check):
    check = fitted_check
    again = AlignedCheck.from_json(check.to_json())
    crops = np.stack([jittered(genuine(600), 600), jittered(apply_tells(genuine(601), [TellInstance("logo_misplace", 1.0, 1.0, 1)]), 601)])
    np.testing.assert_allclose(aligned_scores(check, ["smartphone"] * 2, crops)[0], aligned_scores(again, ["smartphone"] * 2, crops)[0],
                               atol=1e-3)
    probabilities = np.array([[0.3, 0.7], [0.3, 0.7]])
    fused, findings, scores = apply_aligned_check(again, crops, probabilities, CLASSES)
    assert scores[1] > scores[0]
    assert fused[1, 0] > fused[0, 0]
    assert findings[1] is not None and findings[1].to_dict()["detector"] == "aligned"
    # 1 - s' follows the fusion exactly: sigmoid(a * logit(s) + b * max(0, score - knee) + c).
    expected = 1 / (1 + math.exp(-(math.log(0.3 / 0.7) + 0.5 * scores[1])))
    assert fused[1, 0] == pytest.approx(expected, rel=1e-6)
    # Below the knee the check adds nothing: a genuine item a little unusual is not penalised.
    knee = float(scores.mean())
    hinged = AlignedCheck(again.products, again.weights, again.bias, again.feature_mean, again.feature_std,
                          fusion=(1.0, 0.5, 0.0), fires_above=knee)
    fused, findings, _ = apply_aligned_check(hinged, crops, probabilities, CLASSES)
    assert fused[0, 0] == pytest.approx(0.3, rel=1e-6) and findings[0] is None
    expected = 1 / (1 + math.exp(-(math.log(0.3 / 0.7) + 0.5 * (scores[1] - knee))))
    assert fused[1, 0] == pytest.approx(expected, rel=1e-6) and findings[1] is not None
    assert np.isnan(aligned_scores(check, ["drone"], crops[:1])[0][0])  # a product without references has no say


def _damaged(text: str, change) -> str:
    data = json.loads(text)
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=9), "version"),
    (lambda d: d.update(features=["edge_p99"]), "features"),
    (lambda d: d.update(arrays="bm90IGEgemlw"), "unreadable"),
    (lambda d: d.update(weights=[1.0]), "weights"),
    (lambda d: d.update(fusion=[-1.0, 1.0, 0.0]), "fusion"),
    (lambda d: d.update(neighbours=0), "neighbours"),
])
def test_a_damaged_bank_is_refused(fitted_check, change, message):
    text = _damaged(fitted_check.to_json(), change)
    with pytest.raises(ConfigError, match=message):
        AlignedCheck.from_json(text)


def test_a_crop_of_nothing_registers_with_no_say(references):
    blank = np.full((SIZE, SIZE, 3), 90, np.uint8)
    assert register(blank, references.template).correlation < MIN_CORRELATION
    assert edge_map(blank).max() == 0.0


def test_the_fusion_weighs_evidence_that_separates_and_never_goes_negative():
    rng = np.random.default_rng(0)
    labels = np.arange(400) % 2 == 1
    logits = rng.normal(0, 1, 400) + labels  # a classifier that is weakly right
    informative = np.where(labels, rng.exponential(2.0, 400), 0.0)  # fires on counterfeits only
    b, _ = fit_added_evidence(logits, informative, labels)
    assert b > 0.5
    # Evidence that fires on genuine items only would get a negative weight from a free fit;
    # here it gets none, so the check can only add to the classifier.
    misleading = np.where(labels, 0.0, rng.exponential(2.0, 400))
    b, _ = fit_added_evidence(logits, misleading, labels)
    assert b == 0.0
