"""Metrics against values worked out by hand, plus scikit-learn cross-checks on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longteng.errors import ConfigError
from longteng.training import metrics

# ----------------------------------------------------------------------------- classification

# y_true = [0, 1, 2, 2, 1], y_pred = [0, 2, 2, 2, 1]
#   true 0 -> predicted 0                     row [1, 0, 0]
#   true 1 -> predicted 2 (index 1), 1 (4)    row [0, 1, 1]
#   true 2 -> predicted 2, 2                  row [0, 0, 2]
Y_TRUE = np.array([0, 1, 2, 2, 1])
Y_PRED = np.array([0, 2, 2, 2, 1])


def test_accuracy_by_hand():
    # 4 of 5 right (only index 1 is wrong).
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.8)


def test_confusion_matrix_by_hand():
    expected = [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert metrics.confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == expected


def test_per_class_metrics_by_hand():
    result = metrics.per_class_metrics(Y_TRUE, Y_PRED, 3)
    # Column sums (predicted) [1, 1, 3], diagonal [1, 1, 2], row sums (support) [1, 2, 2].
    np.testing.assert_allclose(result.precision, [1.0, 1.0, 2 / 3])
    np.testing.assert_allclose(result.recall, [1.0, 0.5, 1.0])
    # F1 = 2PR/(P+R): class 1 -> 2*0.5/1.5 = 2/3; class 2 -> (4/3)/(5/3) = 0.8.
    np.testing.assert_allclose(result.f1, [1.0, 2 / 3, 0.8])
    assert result.support.tolist() == [1, 2, 2]
    assert result.macro_f1 == pytest.approx((1 + 2 / 3 + 0.8) / 3)


def test_per_class_zero_division_gives_zero():
    # Class 2 is never predicted (precision 0/0) and class 3 never occurs nor is predicted.
    result = metrics.per_class_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]), 4)
    # Class 1: predicted twice, right once -> precision 0.5, recall 1, F1 2*0.5/1.5 = 2/3.
    np.testing.assert_allclose(result.precision, [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(result.recall, [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(result.f1, [1.0, 2 / 3, 0.0, 0.0])
    assert result.support.tolist() == [1, 1, 1, 0]


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ConfigError, match="outside"):
        metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_log_loss_by_hand():
    probabilities = np.array([[0.5, 0.5], [0.25, 0.75]])
    # -(ln 0.5 + ln 0.75) / 2
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert metrics.log_loss(probabilities, np.array([0, 1])) == pytest.approx(expected)


# ----------------------------------------------------------------------------- ROC and PR


def test_roc_curve_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positive = np.array([1, 0, 1, 0, 0])
    fpr, tpr, thresholds = metrics.roc_curve(scores, positive)
    # 2 positives, 3 negatives; flagging score >= t for t = inf, 0.9, 0.8, 0.7, 0.6, 0.5.
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1, 1])
    assert thresholds[0] == np.inf
    np.testing.assert_allclose(thresholds[1:], scores)


@pytest.mark.parametrize(
    ("scores", "positive", "expected"),
    [
        # Positives {0.9, 0.7} vs negatives {0.8, 0.6, 0.5}: 0.9 beats 3, 0.7 beats 2 -> 5/6.
        ([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0], 5 / 6),
        # Ties: pos 0.8 vs neg 0.8 -> 1/2, vs neg 0.3 -> 1; pos 0.3 vs 0.8 -> 0, vs 0.3 -> 1/2: 2/4.
        ([0.8, 0.8, 0.3, 0.3], [1, 0, 1, 0], 0.5),
        # pos 0.9 beats both negatives (2); pos 0.5 ties neg 0.5 (1/2) and beats 0.1 (1): 3.5/4.
        ([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0], 0.875),
        # Perfectly inverted ranking.
        ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0),
        # All scores tied: the diagonal.
        ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5),
    ],
)
def test_roc_auc_by_hand(scores, positive, expected):
    assert metrics.roc_auc(np.array(scores), np.array(positive)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scores", "positive", "expected"),
    [
        # Flagged top-k: k=1 P=1 R=1/2; k=2 P=1/2 R=1/2; k=3 P=2/3 R=1 -> 1/2*1 + 1/2*2/3 = 5/6.
        ([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0], 5 / 6),
        # k=2 P=1/2 R=1/3; k=3 P=2/3 R=2/3; k=5 P=3/5 R=1 -> 1/6 + 2/9 + 1/5 = 53/90.
        ([0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 1, 0, 1], 53 / 90),
        # Tie at 0.8 is flagged together: P=1/2 R=1/2; then 0.3: P=2/3 R=1 -> 1/4 + 1/3 = 7/12.
        ([0.8, 0.8, 0.3], [1, 0, 1], 7 / 12),
    ],
)
def test_average_precision_by_hand(scores, positive, expected):
    assert metrics.average_precision(np.array(scores), np.array(positive)) == pytest.approx(expected)


def test_curve_summaries_are_nan_when_a_class_is_missing():
    scores = np.array([0.2, 0.7])
    assert math.isnan(metrics.roc_auc(scores, np.array([1, 1])))
    assert math.isnan(metrics.average_precision(scores, np.array([0, 0])))
    assert math.isnan(metrics.recall_at_false_alarm_rate(scores, np.array([0, 0]), 0.1))
    with pytest.raises(ConfigError):
        metrics.roc_curve(scores, np.array([0, 0]))


# Genuine scores [0.1, 0.2, 0.3, 0.4, 0.9]; counterfeit scores [0.35, 0.5, 0.6, 0.95].
FAR_SCORES = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.35, 0.5, 0.6, 0.95])
FAR_COUNTERFEIT = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize(
    ("max_far", "recall", "threshold", "far"),
    [
        # 0.2 * 5 genuine = 1 false alarm allowed (the 0.9): lowest threshold before the next
        # genuine (0.4) is 0.5 -> flags 0.95, 0.6, 0.5 -> recall 3/4, FAR 1/5.
        (0.2, 0.75, 0.5, 0.2),
        # No false alarm allowed: only 0.95 is above every genuine score -> recall 1/4.
        (0.0, 0.25, 0.95, 0.0),
        # floor(0.19 * 5) = 0 -> same as no false alarm allowed.
        (0.19, 0.25, 0.95, 0.0),
        # Two allowed (0.9, 0.4): threshold 0.35 flags every counterfeit.
        (0.4, 1.0, 0.35, 0.4),
    ],
)
def test_recall_at_false_alarm_rate_by_hand(max_far, recall, threshold, far):
    best = metrics.best_threshold_at_false_alarm_rate(FAR_SCORES, FAR_COUNTERFEIT, max_far)
    assert best.recall == pytest.approx(recall)
    assert best.threshold == pytest.approx(threshold)
    assert best.false_alarm_rate == pytest.approx(far)
    assert metrics.recall_at_false_alarm_rate(FAR_SCORES, FAR_COUNTERFEIT, max_far) == pytest.approx(recall)


def test_recall_at_false_alarm_rate_when_nothing_can_be_flagged():
    # The top score is genuine and no false alarm is allowed: the only admissible threshold is +inf.
    best = metrics.best_threshold_at_false_alarm_rate(np.array([0.9, 0.5]), np.array([0, 1]), 0.0)
    assert best.recall == 0.0
    assert best.threshold == np.inf


@pytest.mark.parametrize(("rate", "n", "expected"), [(0.02, 50, 1), (0.07, 100, 7), (1 - 0.98, 50, 1), (0.019, 50, 0)])
def test_allowed_count_survives_floating_point_rounding(rate, n, expected):
    # 0.07 * 100 = 7.000000000000001 and (1 - 0.98) * 50 = 1.0000000000000009 in float64.
    assert metrics.allowed_count(rate, n) == expected


# ----------------------------------------------------------------------------- calibration error


def test_expected_calibration_error_by_hand():
    confidence = np.array([0.95, 0.95, 0.65, 0.65, 0.15])
    correct = np.array([1, 0, 1, 1, 0])
    result = metrics.expected_calibration_error(confidence, correct, n_bins=5)
    # Bins of width 0.2. (0.8, 1]: 2 photos, mean 0.95, accuracy 0.5, gap 0.45.
    # (0.6, 0.8]: 2 photos, mean 0.65, accuracy 1, gap 0.35. [0, 0.2]: 1 photo, 0.15 vs 0, gap 0.15.
    # ECE = 2/5*0.45 + 2/5*0.35 + 1/5*0.15 = 0.18 + 0.14 + 0.03 = 0.35; max gap 0.45.
    assert result.ece == pytest.approx(0.35)
    assert result.max_calibration_error == pytest.approx(0.45)
    assert [b.count for b in result.bins] == [1, 0, 0, 2, 2]
    assert result.bins[4].accuracy == pytest.approx(0.5)
    assert result.bins[3].mean_confidence == pytest.approx(0.65)
    assert math.isnan(result.bins[1].accuracy)
    assert (result.bins[0].lower, result.bins[4].upper) == (0.0, 1.0)


def test_expected_calibration_error_puts_extremes_in_end_bins_and_is_zero_when_calibrated():
    # Confidence 0 and 1 land in the first and last bins; each is perfectly calibrated.
    result = metrics.expected_calibration_error(np.array([0.0, 1.0, 1.0]), np.array([0, 1, 1]), n_bins=10)
    assert result.bins[0].count == 1 and result.bins[-1].count == 2
    assert result.ece == 0.0


def test_expected_calibration_error_rejects_probabilities_outside_unit_interval():
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        metrics.expected_calibration_error(np.array([1.2]), np.array([1]))


# ----------------------------------------------------------------------------- risk-coverage

RC_CONFIDENCE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
RC_CORRECT = np.array([1, 1, 1, 0, 1, 1, 0, 1, 0, 0])


@pytest.mark.parametrize(
    ("requested", "coverage", "error_rate", "threshold"),
    [
        # Everything kept: 4 errors out of 10.
        (1.0, 1.0, 0.4, 0.05),
        # Top 5 = [1, 1, 1, 0, 1] -> 1 error in 5.
        (0.5, 0.5, 0.2, 0.5),
        # Top 3 are all right.
        (0.3, 0.3, 0.0, 0.7),
        # ceil(0.25 * 10) = 3 photos: rounds up to keep at least what was asked.
        (0.25, 0.3, 0.0, 0.7),
    ],
)
def test_risk_coverage_by_hand(requested, coverage, error_rate, threshold):
    (row,) = metrics.risk_coverage(RC_CONFIDENCE, RC_CORRECT, coverages=(requested,))
    assert row.coverage == pytest.approx(coverage)
    assert row.referred_fraction == pytest.approx(1 - coverage)
    assert row.error_rate == pytest.approx(error_rate)
    assert row.threshold == pytest.approx(threshold)


def test_risk_coverage_keeps_whole_ties():
    # Asking for 2 of 5 lands on the tie at 0.8: a threshold keeps all four photos >= 0.8.
    (row,) = metrics.risk_coverage(np.array([0.9, 0.8, 0.8, 0.8, 0.1]), np.array([1, 1, 0, 1, 1]), coverages=(0.4,))
    assert row.kept == 4 and row.coverage == pytest.approx(0.8)
    assert row.error_rate == pytest.approx(0.25)


def test_risk_coverage_rejects_zero_coverage():
    with pytest.raises(ConfigError):
        metrics.risk_coverage(RC_CONFIDENCE, RC_CORRECT, coverages=(0.0,))


# ----------------------------------------------------------------------------- groups


def test_recall_by_group_by_hand():
    keys = [["a"], ["a", "b"], ["b"], [], ["a", "a"]]
    caught = np.array([1, 0, 1, 1, 0])
    result = metrics.recall_by_group(keys, caught)
    # a: photos 0, 1, 4 (a repeated key counts once) -> caught only photo 0 -> 1/3.
    # b: photos 1, 2 -> caught photo 2 -> 1/2. Photo 3 belongs to no group.
    assert list(result) == ["a", "b"]
    assert (result["a"].count, result["a"].caught) == (3, 1)
    assert result["a"].recall == pytest.approx(1 / 3)
    assert (result["b"].count, result["b"].caught) == (2, 1)


# ----------------------------------------------------------------------------- bootstrap


def _accuracy_metric(y: np.ndarray, correct: np.ndarray) -> float:
    return float(np.mean(correct == y))


def test_bootstrap_delta_is_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    y = np.ones(300, dtype=int)
    a, b = (rng.random(300) < 0.7).astype(int), (rng.random(300) < 0.8).astype(int)
    first = metrics.bootstrap_delta(_accuracy_metric, y, a, b, n_boot=200, seed=5)
    assert metrics.bootstrap_delta(_accuracy_metric, y, a, b, n_boot=200, seed=5) == first
    assert metrics.bootstrap_delta(_accuracy_metric, y, a, b, n_boot=200, seed=6) != first
    # The point estimate is the plain difference of accuracies, whatever the seed.
    assert first[0] == pytest.approx(b.mean() - a.mean())


def test_bootstrap_delta_ci_covers_the_true_delta():
    # Model A is right with probability 0.70, model B with 0.80: true delta 0.10. Over 20
    # independent test sets a 95 % interval should miss it about once; allow up to 4 misses.
    covered = 0
    for data_seed in range(20):
        rng = np.random.default_rng(100 + data_seed)
        y = np.ones(400, dtype=int)
        a, b = (rng.random(400) < 0.7).astype(int), (rng.random(400) < 0.8).astype(int)
        _, low, high = metrics.bootstrap_delta(_accuracy_metric, y, a, b, n_boot=300, seed=0)
        covered += low <= 0.10 <= high
    assert covered >= 16


def test_bootstrap_delta_of_identical_models_is_exactly_zero():
    y = np.array([1, 0, 1, 1, 0, 1])
    outputs = np.array([1, 1, 1, 0, 0, 1])
    assert metrics.bootstrap_delta(_accuracy_metric, y, outputs, outputs, n_boot=50) == (0.0, 0.0, 0.0)


def test_bootstrap_by_case_widens_the_interval_for_correlated_photos():
    # 40 cases of 10 photos; a model is right or wrong on a whole case at once. Resampling
    # photos pretends there are 400 independent observations, so its interval is far too narrow.
    rng = np.random.default_rng(3)
    case_correct_a = rng.random(40) < 0.6
    case_correct_b = rng.random(40) < 0.8
    cases = np.repeat([f"case{i}" for i in range(40)], 10)
    y = np.ones(400, dtype=int)
    a, b = np.repeat(case_correct_a, 10).astype(int), np.repeat(case_correct_b, 10).astype(int)
    _, photo_low, photo_high = metrics.bootstrap_delta(_accuracy_metric, y, a, b, n_boot=400, seed=0)
    _, case_low, case_high = metrics.bootstrap_delta(_accuracy_metric, y, a, b, groups=cases, n_boot=400, seed=0)
    # With 10 identical photos per case the width should grow by about sqrt(10) ~ 3.2.
    assert (case_high - case_low) > 2.0 * (photo_high - photo_low)


def test_bootstrap_ci_drops_undefined_replicates():
    # roc_auc is NaN on a replicate without a positive; the interval comes from the others.
    y = np.array([1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    value, low, high = metrics.bootstrap_ci(lambda t, s: metrics.roc_auc(s, t), y, scores, n_boot=100)
    assert value == 1.0 and low == 1.0 and high == 1.0


# ----------------------------------------------------------------------------- scikit-learn cross-checks


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("decimals", [1, 2, 6])  # few decimals -> many ties
def test_binary_metrics_match_scikit_learn(seed, decimals):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    positive = rng.random(300) < 0.3
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * positive, 0.2), 0, 1), decimals)
    assert metrics.roc_auc(scores, positive) == pytest.approx(sklearn_metrics.roc_auc_score(positive, scores))
    assert metrics.average_precision(scores, positive) == pytest.approx(
        sklearn_metrics.average_precision_score(positive, scores)
    )
    fpr, tpr, thresholds = metrics.roc_curve(scores, positive)
    ref_fpr, ref_tpr, ref_thresholds = sklearn_metrics.roc_curve(positive, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thresholds[1:], ref_thresholds[1:])


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_metrics_match_scikit_learn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 200)
    # Class 4 is never predicted, to exercise the zero-division convention.
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200)) % 4
    labels = list(range(5))
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, 5), sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels)
    )
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    result = metrics.per_class_metrics(y_true, y_pred, 5)
    np.testing.assert_allclose(result.precision, precision)
    np.testing.assert_allclose(result.recall, recall)
    np.testing.assert_allclose(result.f1, f1)
    np.testing.assert_array_equal(result.support, support)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))


def test_expected_calibration_error_tolerates_float32_rounding_above_one():
    # float32 softmax outputs can sum to 1.0000001; that is rounding, not a bad probability.
    result = metrics.expected_calibration_error(np.array([1.0000001, 0.5]), np.array([1, 0]), n_bins=2)
    # Bin (0.5, 1]: one photo, confidence 1 (clipped), correct; bin [0, 0.5]: 0.5 vs 0 -> 1/2 * 0.5.
    assert result.ece == pytest.approx(0.25)


def test_validation_metrics_judge_an_epoch_after_its_temperature():
    """An over-confident epoch that ranks every photo right loses on the raw NLL (one
    confident mistake in the argmax costs it) and wins once temperature-scaled."""
    from longteng.training.metrics import validation_metrics

    classes = ["phone/counterfeit", "phone/genuine"]
    labels = np.array([0] * 10 + [1] * 10)
    rng = np.random.default_rng(0)
    # Logit margins. Sure (30) and right on all but one photo, which it gets wrong by 15.
    margins_sharp = np.r_[np.full(9, 1.0), -0.5, np.full(10, -1.0)] * 30
    # Cautious: margin 0.4 everywhere, but three photos on the wrong side.
    margins_soft = np.r_[np.full(8, 0.4), -0.4, -0.4, np.full(9, -0.4), 0.4] + rng.normal(0, 0.01, 20)
    sharp, soft = (np.stack([m / 2, -m / 2], axis=1) for m in (margins_sharp, margins_soft))
    a, b = validation_metrics(sharp, labels, classes), validation_metrics(soft, labels, classes)
    assert a["val_nll"] > b["val_nll"]
    assert a["val_nll_calibrated"] < b["val_nll_calibrated"]
    assert a["val_counterfeit_auc"] > b["val_counterfeit_auc"]
    assert a["val_temperature"] > 1.0  # the sharp epoch is cooled down
    assert a["val_nll_calibrated"] <= a["val_nll"] and b["val_nll_calibrated"] <= b["val_nll"] + 1e-12


@pytest.mark.parametrize(
    "better, worse, why",
    [
        (dict(val_counterfeit_auc=0.93, val_nll_calibrated=0.45), dict(val_counterfeit_auc=0.91, val_nll_calibrated=0.40),
         "the ranking decides, not the NLL"),
        (dict(val_counterfeit_auc=0.9301, val_nll_calibrated=0.41), dict(val_counterfeit_auc=0.9304, val_nll_calibrated=0.44),
         "AUC within a thousandth is a tie the calibrated NLL breaks"),
        (dict(val_counterfeit_auc=float("nan"), val_nll_calibrated=0.30), dict(val_counterfeit_auc=float("nan"), val_nll_calibrated=0.50),
         "without an AUC (one side only) the NLL decides"),
        (dict(val_counterfeit_auc=0.60, val_nll_calibrated=0.90), dict(val_counterfeit_auc=float("nan"), val_nll_calibrated=0.10),
         "any AUC beats none"),
    ],
)
def test_selection_key_orders_epochs(better, worse, why):
    from longteng.training.metrics import selection_key

    assert selection_key(better) > selection_key(worse), why
