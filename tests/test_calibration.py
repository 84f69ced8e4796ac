"""Temperature scaling: exact optimum on a tiny case, recovery of a known over-confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longteng.decision import softmax
from longteng.errors import ConfigError
from longteng.training import metrics
from longteng.training.calibration import fit_temperature, negative_log_likelihood


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
