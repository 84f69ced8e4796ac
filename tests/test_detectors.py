"""Recall per detector at a false-alarm budget (training/detectors.py), on scores whose answer
is known by counting: 100 genuine photos, two tells of 10 counterfeits each."""

import numpy as np
import pytest

from longteng.training.detectors import detector_report, detector_scores

GENUINE = 100
IS_COUNTERFEIT = np.array([False] * GENUINE + [True] * 20)
TELLS = [{}] * GENUINE + [{"glyph_swap": 0.5}] * 10 + [{"off_palette": 0.6}] * 10


def test_recall_at_the_budget_per_tell():
    # Genuine scores spread over [0, 0.5]; glyph swaps all above them, off-palette ones below the
    # third highest genuine score, so the 2% budget (2 of 100 genuine) catches none of them.
    supervised = np.r_[np.linspace(0, 0.5, GENUINE), np.full(10, 0.9), np.linspace(0.1, 0.4, 10)]
    report = detector_report({"supervised": supervised}, IS_COUNTERFEIT, TELLS)["detectors"]["supervised"]
    assert report["recall"] == 0.5 and report["false_alarm_rate"] == 0.02
    assert report["per_tell"] == {"glyph_swap": {"n": 10, "recall": 1.0}, "off_palette": {"n": 10, "recall": 0.0}}


@pytest.mark.parametrize("genuine_flagged, expected", [(0, 0.25), (2, 0.25), (3, 0.0)])
def test_a_flag_counts_only_while_its_false_alarms_fit_the_budget(genuine_flagged, expected):
    flagged = np.zeros(120)
    flagged[:genuine_flagged] = 1
    flagged[GENUINE : GENUINE + 5] = 1  # half the glyph swaps
    report = detector_report({"text": flagged}, IS_COUNTERFEIT, TELLS)["detectors"]["text"]
    assert report["recall"] == expected
    assert report["per_tell"]["glyph_swap"]["recall"] == 2 * expected


def test_scores_compare_the_classifier_before_and_after_fusion():
    classes = ["drone/counterfeit", "drone/genuine"]
    before = np.array([[0.2, 0.8], [0.7, 0.3]])
    after = np.array([[0.9, 0.1], [0.7, 0.3]])
    scores = detector_scores(before, after, np.array([True, False]), None, classes)
    assert list(scores) == ["supervised", "text", "fused"]
    np.testing.assert_allclose(scores["supervised"], [0.2, 0.7])
    np.testing.assert_allclose(scores["fused"], [0.9, 0.7])
    np.testing.assert_array_equal(scores["text"], [1.0, 0.0])


def test_the_aligned_check_ranks_photos_it_had_no_say_on_lowest():
    classes = ["drone/counterfeit", "drone/genuine"]
    probabilities = np.array([[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    scores = detector_scores(probabilities, probabilities, None, None, classes, np.array([-2.0, 3.0, np.nan]))
    assert list(scores) == ["supervised", "aligned", "fused"]
    np.testing.assert_allclose(scores["aligned"], [-2.0, 3.0, -3.0])
