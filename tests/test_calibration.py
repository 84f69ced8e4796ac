"""Temperature scaling: exact optimum on a tiny case, recovery of a known over-confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longteng.decision import ScoreCalibration, calibrate_scores, calibrated_probabilities, counterfeit_score, softmax
from longteng.errors import ConfigError
from longteng.training import metrics
from longteng.training.calibration import (
    fit_calibration, fit_score_calibration, fit_temperature, negative_log_likelihood,
)


def test_negative_log_likelihood_by_hand():
    # softmax([0, 0]) = [1/2, 1/2]; softmax([0, ln 3]) = [1/4, 3/4].
    logits = np.array([[0.0, 0.0], [0.0, math.log(3)]])
    assert negative_log_likelihood(logits, np.array([0, 1])) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    # Temperature 2 on [0, 2 ln 3] gives the same [1/4, 3/4].
    assert negative_log_likelihood(np.array([[0.0, 2 * math.log(3)]]), np.array([1]), 2.0) == pytest.approx(
        -math.log(0.75)
    )


@pytest.mark.parametrize(("margin", "labels", "expected"), [
    # Four photos with logits [2, 0]; three are class 0. P(class 0) = sigmoid(2 / T), and the
    # NLL is minimal when that equals the observed 3/4: 2 / T = logit(3/4) = ln 3 -> T = 2 / ln 3.
    (2.0, [0, 0, 0, 1], 2.0 / math.log(3)),
    # Nine of ten are class 0 with logits [1, 0]: 1 / T = ln 9 -> T = 1 / ln 9 (under-confident logits).
    (1.0, [0] * 9 + [1], 1.0 / math.log(9)),
])
def test_fit_temperature_finds_the_exact_optimum(margin, labels, expected):
    logits = np.tile([margin, 0.0], (len(labels), 1))
    assert fit_temperature(logits, np.array(labels)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_temperature_undoes_known_over_confidence(seed):
    # Labels are drawn from softmax(true logits), so the true logits are calibrated; the
    # model reports 5x the true logits, i.e. it is over-confident by a temperature of 5.
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, size=(4000, 4))
    true_probabilities = softmax(true_logits)
    labels = np.array([rng.choice(4, p=row) for row in true_probabilities])
    logits = 5.0 * true_logits

    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(5.0, rel=0.1)

    before, after = softmax(logits), softmax(logits, temperature)
    assert metrics.log_loss(after, labels) < metrics.log_loss(before, labels)
    ece_before = metrics.expected_calibration_error(before.max(axis=1), before.argmax(axis=1) == labels).ece
    ece_after = metrics.expected_calibration_error(after.max(axis=1), after.argmax(axis=1) == labels).ece
    assert ece_after < ece_before / 3


def test_fit_temperature_is_deterministic():
    rng = np.random.default_rng(7)
    logits, labels = rng.normal(size=(200, 3)) * 4, rng.integers(0, 3, 200)
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels)


@pytest.mark.parametrize(("labels", "expected"), [
    # Every label agrees with the largest logit: sharper is always better -> lower bound.
    ([0, 1, 0], 0.05),
    # Every label is the smaller logit: flatter is always better -> upper bound.
    ([1, 0, 1], 20.0),
])
def test_fit_temperature_stops_at_the_bounds(labels, expected):
    logits = np.array([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    assert fit_temperature(logits, np.array(labels)) == pytest.approx(expected)


@pytest.mark.parametrize(("logits", "labels", "message"), [
    (np.zeros((3, 2)), np.array([0, 1]), "labels"),
    (np.zeros((2, 2)), np.array([0, 2]), "class indices"),
    (np.array([[np.nan, 0.0]]), np.array([0]), "finite"),
    (np.zeros((0, 2)), np.zeros(0, dtype=int), "N > 0"),
])
def test_fit_temperature_rejects_bad_input(logits, labels, message):
    with pytest.raises(ConfigError, match=message):
        fit_temperature(logits, labels)


def test_fit_temperature_rejects_bad_bounds():
    with pytest.raises(ConfigError, match="bounds"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 1]), bounds=(2.0, 1.0))


# --- the counterfeit score's Platt scaling ---------------------------------------------------

CLASSES = ["drone/counterfeit", "drone/genuine", "smartphone/counterfeit", "smartphone/genuine"]


def _logit(p):
    return math.log(p) - math.log1p(-p)


@pytest.mark.parametrize(("slope", "bias"), [(1.0, 0.0), (0.8, 0.7), (2.0, -1.0)])
def test_score_calibration_sets_the_counterfeit_mass_and_keeps_the_proportions(slope, bias):
    probabilities = np.array([[0.3, 0.6, 0.04, 0.06], [0.02, 0.08, 0.5, 0.4]])
    out = calibrate_scores(probabilities, ScoreCalibration(slope, bias), CLASSES)
    for row, calibrated in zip(probabilities, out):
        s = row[0] + row[2]
        expected = 1 / (1 + math.exp(-(slope * _logit(s) + bias)))
        assert calibrated[0] + calibrated[2] == pytest.approx(expected, abs=1e-12)
        assert calibrated.sum() == pytest.approx(1.0, abs=1e-12)
        # Within each side, the classes keep their shares (the product split stays).
        assert calibrated[0] / calibrated[2] == pytest.approx(row[0] / row[2])
        assert calibrated[1] / calibrated[3] == pytest.approx(row[1] / row[3])


def test_score_calibration_keeps_the_ranking_and_survives_certain_scores():
    probabilities = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.2, 0.8, 0, 0], [0.7, 0.3, 0, 0]])
    out = calibrate_scores(probabilities, ScoreCalibration(0.5, 1.0), CLASSES)
    assert np.all(np.isfinite(out))
    scores = counterfeit_score(out, CLASSES)
    assert list(np.argsort(scores)) == list(np.argsort(counterfeit_score(probabilities, CLASSES)))


@pytest.mark.parametrize(("slope", "bias", "seed"), [(0.8, 0.7, 0), (2.0, -0.5, 1), (1.0, 0.0, 2)])
def test_fit_score_calibration_recovers_a_known_miscalibration(slope, bias, seed):
    """Scores s whose honest probability is sigmoid(slope * logit(s) + bias): labels drawn from
    that probability; the fit must find (slope, bias) back."""
    rng = np.random.default_rng(seed)
    scores = 1 / (1 + np.exp(-rng.normal(0.0, 2.0, 20000)))
    honest = 1 / (1 + np.exp(-(slope * np.log(scores / (1 - scores)) + bias)))
    fitted = fit_score_calibration(scores, rng.random(len(scores)) < honest)
    assert fitted.slope == pytest.approx(slope, abs=0.08)
    assert fitted.bias == pytest.approx(bias, abs=0.08)


def test_fit_score_calibration_is_the_identity_without_both_classes():
    assert fit_score_calibration(np.array([0.2, 0.9]), np.array([True, True])).is_identity
    assert fit_score_calibration(np.array([]), np.array([], dtype=bool)).is_identity


def test_fit_calibration_improves_the_validation_nll_of_a_biased_model():
    """A model that under-rates counterfeits: temperature alone cannot move mass between the
    sides, the score calibration can."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 4000)
    logits = rng.normal(0.0, 1.0, (4000, 4))
    logits[np.arange(4000), labels] += 2.0
    logits[:, [0, 2]] -= 1.5  # counterfeit classes under-rated
    temperature, calibration = fit_calibration(logits, labels, CLASSES)
    positive = np.isin(labels, [0, 2])

    def nll(probabilities):
        s = np.clip(counterfeit_score(probabilities, CLASSES), 1e-12, 1 - 1e-12)
        return -np.mean(np.where(positive, np.log(s), np.log(1 - s)))

    assert calibration.bias > 0.5
    assert nll(calibrated_probabilities(logits, temperature, calibration, CLASSES)) < nll(softmax(logits, temperature)) - 0.05


@pytest.mark.parametrize(
    ("data", "fragment"),
    [({"slope": 0.0, "bias": 0.0}, "slope"), ({"slope": -1.0, "bias": 0.0}, "slope"),
     ({"slope": float("nan"), "bias": 0.0}, "finite"), ({"slope": 1.0, "offset": 0.0}, "unknown keys")],
)
def test_bad_score_calibration_is_refused_naming_the_field(data, fragment):
    with pytest.raises((ConfigError, TypeError), match=fragment):
        ScoreCalibration.from_dict(data)
