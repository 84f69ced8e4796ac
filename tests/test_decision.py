"""Verdict logic (longteng.decision) and the choice of the operating point on validation data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from longteng.decision import (
    OperatingPoint,
    counterfeit_score,
    decide,
    product_probabilities,
    softmax,
    verdicts_for_scores,
)
from longteng.errors import ConfigError
from longteng.training.operating_point import choose_operating_point, operating_metrics

CLASSES = ["drone/counterfeit", "drone/genuine", "smartphone/counterfeit", "smartphone/genuine"]


def _probabilities_with_score(score: float, drone_share: float = 0.8) -> np.ndarray:
    """One row whose counterfeit score is `score` and whose drone marginal is `drone_share`."""
    return np.array([
        score * drone_share,
        (1 - score) * drone_share,
        score * (1 - drone_share),
        (1 - score) * (1 - drone_share),
    ])


# ----------------------------------------------------------------------------- softmax and marginals


@pytest.mark.parametrize(("logits", "temperature", "expected"), [
    ([0.0, math.log(3)], 1.0, [0.25, 0.75]),
    ([0.0, 2 * math.log(3)], 2.0, [0.25, 0.75]),
    # exp(1000) overflows; the shifted computation does not.
    ([1000.0, 1000.0], 1.0, [0.5, 0.5]),
    ([-1000.0, 0.0], 1.0, [0.0, 1.0]),
])
def test_softmax_by_hand(logits, temperature, expected):
    np.testing.assert_allclose(softmax(np.array([logits]), temperature)[0], expected, atol=1e-12)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_softmax_rejects_bad_temperature(temperature):
    with pytest.raises(ConfigError, match="temperature"):
        softmax(np.zeros((1, 2)), temperature)


def test_counterfeit_score_and_product_probabilities_by_hand():
    probabilities = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25]])
    # Counterfeit columns 0 and 2: 0.1 + 0.3 = 0.4 and 0.5 + 0.25 = 0.75.
    np.testing.assert_allclose(counterfeit_score(probabilities, CLASSES), [0.4, 0.75])
    products, marginals = product_probabilities(probabilities, CLASSES)
    assert products == ["drone", "smartphone"]
    # drone = columns 0 + 1, smartphone = columns 2 + 3.
    np.testing.assert_allclose(marginals, [[0.3, 0.7], [0.5, 0.5]])


@pytest.mark.parametrize(("probabilities", "names", "message"), [
    (np.ones((1, 3)) / 3, CLASSES, "shape"),
    (np.ones((1, 2)) / 2, ["drone/genuine", "drone/fake"], "not '<product>"),
    (np.ones((1, 2)) / 2, ["drone", "drone/genuine"], "not '<product>"),
    (np.ones((1, 2)) / 2, ["drone/genuine", "phone/genuine"], "no '<product>/counterfeit'"),
])
def test_scoring_rejects_mismatched_classes(probabilities, names, message):
    with pytest.raises(ConfigError, match=message):
        counterfeit_score(probabilities, names)


# ----------------------------------------------------------------------------- decide

BAND = OperatingPoint(refer_low=0.2, refer_high=0.8, max_false_alarm_rate=0.02, min_counterfeit_recall=0.98)
NO_BAND = OperatingPoint(refer_low=0.5, refer_high=0.5, max_false_alarm_rate=0.02, min_counterfeit_recall=0.98)


@pytest.mark.parametrize(("operating_point", "score", "verdict", "confidence"), [
    (BAND, 0.1, "GENUINE", 0.9),  # below refer_low: GENUINE with 1 - score
    (BAND, 0.2, "REFER", 0.8),  # refer_low itself is inside the band; max(0.2, 0.8)
    (BAND, 0.5, "REFER", 0.5),
    (BAND, 0.7, "REFER", 0.7),
    (BAND, 0.8, "COUNTERFEIT", 0.8),  # refer_high itself is COUNTERFEIT
    (BAND, 0.95, "COUNTERFEIT", 0.95),
    (NO_BAND, 0.5, "COUNTERFEIT", 0.5),
    (NO_BAND, 0.49, "GENUINE", 0.51),
])
def test_decide_verdicts(operating_point, score, verdict, confidence):
    (decision,) = decide(_probabilities_with_score(score)[None, :], CLASSES, operating_point)
    assert decision.verdict == verdict
    assert decision.confidence == pytest.approx(confidence)
    assert decision.counterfeit_score == pytest.approx(score)
    assert decision.refer_reason == ("uncertain" if verdict == "REFER" else "")
    assert decision.product == "drone"
    assert decision.product_confidence == pytest.approx(0.8)


def test_unknown_photo_is_referred_however_confident():
    probabilities = np.stack([_probabilities_with_score(0.99, 0.3), _probabilities_with_score(0.01, 0.3)])
    decisions = decide(probabilities, CLASSES, BAND, unknown=np.array([True, False]))
    assert decisions[0].verdict == "REFER" and decisions[0].refer_reason == "unknown"
    assert decisions[0].confidence == pytest.approx(0.99)
    assert decisions[1].verdict == "GENUINE"
    assert decisions[1].product == "smartphone"
    assert json.loads(json.dumps(decisions[0].to_dict()))["verdict"] == "REFER"


def test_decide_rejects_unknown_flags_of_wrong_length():
    with pytest.raises(ConfigError, match="unknown"):
        decide(_probabilities_with_score(0.5)[None, :], CLASSES, BAND, unknown=np.array([True, False]))


def test_verdicts_for_scores_matches_decide():
    scores = np.array([0.0, 0.19, 0.2, 0.79, 0.8, 1.0])
    assert list(verdicts_for_scores(scores, BAND)) == ["GENUINE", "GENUINE", "REFER", "REFER", "COUNTERFEIT", "COUNTERFEIT"]


# ----------------------------------------------------------------------------- OperatingPoint


def test_operating_point_round_trips_through_json():
    point = OperatingPoint(np.float32(0.25), np.float64(0.75), 0.02, 0.98)
    restored = OperatingPoint.from_dict(json.loads(json.dumps(point.to_dict())))
    assert restored == point
    assert type(restored.refer_low) is float and restored.has_refer_band


@pytest.mark.parametrize(("values", "message"), [
    ({"refer_low": 0.8, "refer_high": 0.2, "max_false_alarm_rate": 0.02, "min_counterfeit_recall": 0.98}, "must not exceed"),
    ({"refer_low": 0.2, "refer_high": "x", "max_false_alarm_rate": 0.02, "min_counterfeit_recall": 0.98}, "number"),
    ({"refer_low": 0.2, "refer_high": math.nan, "max_false_alarm_rate": 0.02, "min_counterfeit_recall": 0.98}, "finite"),
    ({"refer_low": 0.2, "refer_high": 0.8, "max_false_alarm_rate": 1.5, "min_counterfeit_recall": 0.98}, "within"),
    ({"refer_low": 0.2, "refer_high": 0.8, "max_false_alarm_rate": 0.02}, "missing min_counterfeit_recall"),
])
def test_operating_point_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        OperatingPoint.from_dict(values)


# ----------------------------------------------------------------------------- choose_operating_point

# Genuine [0.05, 0.1, 0.2, 0.3, 0.6]; counterfeit [0.4, 0.7, 0.8, 0.9, 0.95].
VAL_SCORES = np.array([0.05, 0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9, 0.95])
VAL_COUNTERFEIT = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)


def test_loose_targets_give_a_single_threshold_between_the_bounds():
    # FAR 0.2 of 5 genuine allows one false alarm (the 0.6): anything above 0.3 may be flagged,
    # so refer_high = just above 0.3. Recall 0.8 allows one miss (the 0.4): refer_low = 0.7.
    # 0.7 >= 0.3+: no band; the midpoint (0.3 + 0.7) / 2 = 0.5 meets both targets.
    point = choose_operating_point(VAL_SCORES, VAL_COUNTERFEIT, max_false_alarm_rate=0.2, min_counterfeit_recall=0.8)
    assert point.refer_low == point.refer_high == pytest.approx(0.5)
    result = operating_metrics(VAL_SCORES, VAL_COUNTERFEIT, point)
    assert result["false_alarm_rate"] == pytest.approx(0.2)
    assert result["counterfeit_recall"] == pytest.approx(0.8)
    assert result["refer_rate"] == 0.0


def test_strict_targets_open_a_refer_band():
    # No false alarm: refer_high just above the top genuine 0.6. No miss: refer_low = the
    # lowest counterfeit 0.4. The band [0.4, 0.6+) refers genuine 0.6 and counterfeit 0.4.
    point = choose_operating_point(VAL_SCORES, VAL_COUNTERFEIT, max_false_alarm_rate=0.0, min_counterfeit_recall=1.0)
    assert point.refer_low == 0.4
    assert point.refer_high == np.nextafter(0.6, 1.0)
    assert (point.max_false_alarm_rate, point.min_counterfeit_recall) == (0.0, 1.0)
    assert list(verdicts_for_scores(VAL_SCORES, point)) == ["GENUINE"] * 4 + ["REFER", "REFER"] + ["COUNTERFEIT"] * 4
    result = operating_metrics(VAL_SCORES, VAL_COUNTERFEIT, point)
    assert (result["counterfeit_recall"], result["false_alarm_rate"]) == (1.0, 0.0)
    assert result["refer_rate"] == pytest.approx(0.2)


def test_ties_are_never_split_to_meet_a_target():
    # Genuine [0.5, 0.5, 0.1, 0.1], counterfeit [0.5, 0.9, 0.9, 0.9]. One false alarm allowed
    # (0.25 * 4), but the two genuine 0.5 are tied: flagging one flags both, so refer_high
    # must be above 0.5. One miss allowed: refer_low = the second-lowest counterfeit, 0.9.
    scores = np.array([0.5, 0.5, 0.1, 0.1, 0.5, 0.9, 0.9, 0.9])
    is_counterfeit = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    point = choose_operating_point(scores, is_counterfeit, max_false_alarm_rate=0.25, min_counterfeit_recall=0.75)
    assert not point.has_refer_band
    assert 0.5 < point.refer_high <= 0.9
    result = operating_metrics(scores, is_counterfeit, point)
    assert result["false_alarm_rate"] == 0.0
    assert result["counterfeit_recall"] == pytest.approx(0.75)


def test_small_validation_sets_allow_no_error_below_the_resolution():
    # 10 genuine photos cannot resolve a 2 % rate: floor(0.2) = 0 false alarms allowed.
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(0.0, 0.7, 10), rng.uniform(0.3, 1.0, 10)]
    is_counterfeit = np.r_[np.zeros(10), np.ones(10)].astype(bool)
    point = choose_operating_point(scores, is_counterfeit)
    assert point.refer_high > scores[:10].max()
    assert point.refer_low <= scores[10:].min()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("max_far", "min_recall"), [(0.02, 0.98), (0.05, 0.95), (0.0, 1.0), (0.1, 0.5)])
def test_chosen_point_meets_targets_with_the_narrowest_band(seed, max_far, min_recall):
    rng = np.random.default_rng(seed)
    is_counterfeit = rng.random(600) < 0.4
    # Two decimals -> many ties.
    scores = np.round(np.clip(rng.normal(0.3 + 0.4 * is_counterfeit, 0.15), 0, 1), 2)
    point = choose_operating_point(scores, is_counterfeit, max_far, min_recall)
    result = operating_metrics(scores, is_counterfeit, point)
    assert result["false_alarm_rate"] <= max_far + 1e-12
    assert result["counterfeit_recall"] >= min_recall - 1e-12
    genuine, counterfeit = scores[~is_counterfeit], scores[is_counterfeit]
    if point.has_refer_band:
        # Narrowest: the genuine score just below refer_high could not be flagged, and the
        # counterfeit score at refer_low could not be cleared, without breaking a target.
        highest_unflagged_genuine = genuine[genuine < point.refer_high].max()
        assert np.mean(genuine >= highest_unflagged_genuine) > max_far
        assert np.mean(counterfeit <= point.refer_low) > 1 - min_recall


@pytest.mark.parametrize(("scores", "is_counterfeit", "message"), [
    (np.array([0.1, 0.2]), np.array([False, False]), "0 counterfeit"),
    (np.array([0.8, 0.9]), np.array([True, True]), "0 genuine"),
    (np.array([]), np.array([], dtype=bool), "no photos"),
    (np.array([0.1, np.nan]), np.array([False, True]), "finite"),
])
def test_degenerate_validation_data_raises(scores, is_counterfeit, message):
    with pytest.raises(ConfigError, match=message):
        choose_operating_point(scores, is_counterfeit)


def test_targets_outside_unit_interval_raise():
    with pytest.raises(ConfigError, match="min_counterfeit_recall"):
        choose_operating_point(VAL_SCORES, VAL_COUNTERFEIT, min_counterfeit_recall=1.2)


def test_operating_metrics_by_hand():
    # Scores 0.1 / 0.5 / 0.9 for three counterfeits and three genuine; band [0.3, 0.7):
    # each group gets one GENUINE, one REFER, one COUNTERFEIT.
    scores = np.array([0.1, 0.5, 0.9, 0.1, 0.5, 0.9])
    is_counterfeit = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    result = operating_metrics(scores, is_counterfeit, OperatingPoint(0.3, 0.7, 0.02, 0.98))
    assert result["counterfeit_recall"] == pytest.approx(2 / 3)  # REFER + COUNTERFEIT caught
    assert result["miss_rate"] == pytest.approx(1 / 3)
    assert result["false_alarm_rate"] == pytest.approx(1 / 3)
    assert result["refer_rate"] == pytest.approx(2 / 6)
    assert result["counterfeit_refer_rate"] == pytest.approx(1 / 3)
    assert result["decided_recall"] == pytest.approx(1 / 2)  # of the 2 decided counterfeits, 1 flagged
    assert result["decided_accuracy"] == pytest.approx(2 / 4)  # cf 0.9 flagged, genuine 0.1 cleared
    assert result["verdict_counts"]["REFER"] == {"counterfeit": 1, "genuine": 1}


def test_operating_metrics_without_counterfeits_are_undefined_not_zero():
    result = operating_metrics(np.array([0.1, 0.9]), np.array([False, False]), OperatingPoint(0.3, 0.7, 0.02, 0.98))
    assert math.isnan(result["counterfeit_recall"])
    assert result["false_alarm_rate"] == 0.5


def test_stacked_evidence_moves_the_counterfeit_score_both_ways_and_keeps_the_product():
    from longteng.decision import counterfeit_score, product_probabilities, stack_evidence

    classes = ["drone/counterfeit", "drone/genuine", "phone/counterfeit", "phone/genuine"]
    probabilities = np.array([[0.3, 0.5, 0.1, 0.1], [0.3, 0.5, 0.1, 0.1], [0.3, 0.5, 0.1, 0.1]])
    stacked = stack_evidence(probabilities, classes, np.array([-4.0, 4.0, np.nan]), (1.0, 0.5, 0.0))
    s = 0.4
    expected = [1 / (1 + np.exp(-(np.log(s / (1 - s)) + 0.5 * v))) for v in (-4.0, 4.0)]
    np.testing.assert_allclose(counterfeit_score(stacked, classes)[:2], expected, rtol=1e-9)
    np.testing.assert_allclose(stacked[2], probabilities[2])  # no say: the row stays
    np.testing.assert_allclose(stacked.sum(axis=1), 1.0)
    products, per_product = product_probabilities(stacked, classes)
    assert [products[i] for i in per_product.argmax(axis=1)] == ["drone"] * 3
    # Falling, each side keeps its shares: the drone stays 3:1 against the phone among counterfeits.
    assert stacked[0, 0] / stacked[0, 2] == pytest.approx(3.0)
