"""Evaluation metrics in plain numpy (no torch, no scikit-learn), so ONNX evaluation can use them.

Conventions:

* Labels and predictions are integer class indices; a "positive" for the binary metrics is
  a counterfeit, and a photo is flagged when ``score >= threshold``.
* A ratio whose denominator is zero is 0.0 for per-class precision/recall/F1 (as
  scikit-learn's ``zero_division=0``), and NaN for the curve summaries (ROC-AUC, average
  precision, recall at a false-alarm rate) when one of the two classes is absent, because
  those are undefined rather than bad. The report turns NaN into null.
* Targets on rates are compared on counts, ``count <= floor(rate * n)``, so that 0.02 * 50
  allows exactly one false alarm despite floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from longteng.decision import counterfeit_score, is_counterfeit_class, softmax
from longteng.errors import ConfigError
from longteng.training.calibration import fit_temperature, negative_log_likelihood

# Slack for rate * n computed in floating point (0.07 * 100 == 7.000000000000001).
_COUNT_SLACK = 1e-9
# float32 probabilities from the ONNX runtime can sum to 1.0000001.
_PROBABILITY_SLACK = 1e-5


# --------------------------------------------------------------------------- classification


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = _paired_vectors(y_true, y_pred, "y_true", "y_pred")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; row = true class, column = predicted class."""
    y_true, y_pred = _paired_vectors(y_true, y_pred, "y_true", "y_pred")
    y_true, y_pred = y_true.astype(np.int64), y_pred.astype(np.int64)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.min() < 0 or values.max() >= n_classes:
            raise ConfigError(f"{name} holds class indices outside [0, {n_classes})")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class arrays, index = class index. A zero denominator gives 0.0."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    @property
    def macro_f1(self) -> float:
        return float(self.f1.mean())


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> ClassMetrics:
    matrix = confusion_matrix(y_true, y_pred, n_classes)
    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = _safe_divide(true_positives, predicted)
    recall = _safe_divide(true_positives, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return ClassMetrics(precision, recall, f1, support)


def log_loss(probabilities: np.ndarray, labels: np.ndarray, floor: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class; probabilities are floored at ``floor``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2 or labels.shape != (probabilities.shape[0],) or len(labels) == 0:
        raise ConfigError(f"log_loss needs (N, C) probabilities and (N,) labels, got {probabilities.shape}, {labels.shape}")
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(picked, floor))))


# --------------------------------------------------------------------------- binary curves


@dataclass(frozen=True)
class _Counts:
    """Flag counts for every distinct threshold, highest threshold first.

    Index 0 is the threshold +inf (nothing flagged); index k flags every score >= thresholds[k].
    """

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    n_positive: int
    n_negative: int


def _threshold_counts(scores: np.ndarray, positive: np.ndarray) -> _Counts:
    scores, positive = _paired_vectors(scores, positive, "scores", "positive")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ConfigError("scores must be finite")
    positive = positive.astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_positive = scores[order], positive[order]
    # Tied scores are flagged together, so counts are only taken at the last photo of each tie.
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_positive)[last_of_tie]
    false_positives = last_of_tie + 1 - true_positives
    return _Counts(
        thresholds=np.r_[np.inf, sorted_scores[last_of_tie]],
        true_positives=np.r_[0, true_positives],
        false_positives=np.r_[0, false_positives],
        n_positive=int(positive.sum()),
        n_negative=int((~positive).sum()),
    )


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), one point per distinct score.

    Starts at (0, 0) with threshold +inf. Needs both classes present.
    """
    counts = _threshold_counts(scores, positive)
    if counts.n_positive == 0 or counts.n_negative == 0:
        raise ConfigError("roc_curve needs both positive and negative examples")
    return (
        counts.false_positives / counts.n_negative,
        counts.true_positives / counts.n_positive,
        counts.thresholds,
    )


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the trapezoid rule over distinct thresholds.

    A tie between a positive and a negative counts one half, as in the Mann-Whitney U
    statistic; equals scikit-learn's ``roc_auc_score``. NaN if a class is absent.
    """
    counts = _threshold_counts(scores, positive)
    if counts.n_positive == 0 or counts.n_negative == 0:
        return math.nan
    fpr = counts.false_positives / counts.n_negative
    tpr = counts.true_positives / counts.n_positive
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for each distinct score, highest threshold first."""
    counts = _threshold_counts(scores, positive)
    if counts.n_positive == 0:
        raise ConfigError("precision_recall_curve needs at least one positive example")
    flagged = counts.true_positives[1:] + counts.false_positives[1:]
    precision = counts.true_positives[1:] / flagged
    recall = counts.true_positives[1:] / counts.n_positive
    return precision, recall, counts.thresholds[1:]


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve as the step sum ``sum_k (R_k - R_{k-1}) P_k``.

    This is the PR-AUC the report gives. It does not interpolate between points, which
    would be optimistic; equals scikit-learn's ``average_precision_score``. NaN without positives.
    """
    counts = _threshold_counts(scores, positive)
    if counts.n_positive == 0:
        return math.nan
    precision, recall, _ = precision_recall_curve(scores, positive)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class ThresholdAtFalseAlarm:
    """The single threshold with the best recall whose false-alarm rate is within the limit."""

    threshold: float  # flag when score >= threshold; +inf flags nothing
    recall: float
    false_alarm_rate: float


def best_threshold_at_false_alarm_rate(
    scores: np.ndarray, is_counterfeit: np.ndarray, max_false_alarm_rate: float
) -> ThresholdAtFalseAlarm:
    """Best single-threshold recall with false-alarm rate <= the limit (no REFER band).

    NaN fields when either class is absent.
    """
    _check_rate(max_false_alarm_rate, "max_false_alarm_rate")
    counts = _threshold_counts(scores, is_counterfeit)
    if counts.n_positive == 0 or counts.n_negative == 0:
        return ThresholdAtFalseAlarm(math.nan, math.nan, math.nan)
    allowed = allowed_count(max_false_alarm_rate, counts.n_negative)
    # Both counts only grow as the threshold falls, so the last admissible point has the best recall.
    last = int(np.flatnonzero(counts.false_positives <= allowed)[-1])
    return ThresholdAtFalseAlarm(
        threshold=float(counts.thresholds[last]),
        recall=float(counts.true_positives[last] / counts.n_positive),
        false_alarm_rate=float(counts.false_positives[last] / counts.n_negative),
    )


def recall_at_false_alarm_rate(scores: np.ndarray, is_counterfeit: np.ndarray, max_far: float) -> float:
    """Best counterfeit recall at one threshold whose false-alarm rate is <= ``max_far``."""
    return best_threshold_at_false_alarm_rate(scores, is_counterfeit, max_far).recall


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: confidences in (lower, upper] (the first bin includes 0)."""

    lower: float
    upper: float
    count: int
    mean_confidence: float  # NaN for an empty bin
    accuracy: float  # fraction correct; NaN for an empty bin


@dataclass(frozen=True)
class CalibrationError:
    ece: float  # sum over bins of (count / N) * |accuracy - mean confidence|
    max_calibration_error: float  # the largest gap over non-empty bins
    bins: tuple[ReliabilityBin, ...]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> CalibrationError:
    """Expected calibration error over ``n_bins`` equal-width bins of [0, 1].

    For top-class calibration pass the top probability and whether the top class was right.
    For a binary score pass the score and whether the photo is positive: the same formula then
    compares the mean predicted probability of each bin with the observed frequency.
    """
    confidence, correct = _paired_vectors(confidence, correct, "confidence", "correct")
    confidence = confidence.astype(np.float64)
    correct = correct.astype(np.float64)
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    if np.any((confidence < -_PROBABILITY_SLACK) | (confidence > 1 + _PROBABILITY_SLACK)) or not np.all(
        np.isfinite(confidence)
    ):
        raise ConfigError("confidence values must lie in [0, 1]")
    confidence = np.clip(confidence, 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(bin_of, minlength=n_bins)
    confidence_sums = np.bincount(bin_of, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(bin_of, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = confidence_sums / counts
        bin_accuracy = correct_sums / counts
    gaps = np.abs(bin_accuracy - mean_confidence)
    occupied = counts > 0
    ece = float(np.sum(counts[occupied] / len(confidence) * gaps[occupied]))
    bins = tuple(
        ReliabilityBin(float(edges[i]), float(edges[i + 1]), int(counts[i]), float(mean_confidence[i]), float(bin_accuracy[i]))
        for i in range(n_bins)
    )
    return CalibrationError(ece, float(gaps[occupied].max()), bins)


# --------------------------------------------------------------------------- selective prediction


@dataclass(frozen=True)
class RiskCoverageRow:
    """Keep the photos with confidence >= threshold, refer the rest to an expert.

    ``coverage`` is the fraction actually kept: with tied confidences it can exceed
    ``requested_coverage``, because a threshold cannot split a tie.
    """

    requested_coverage: float
    coverage: float
    referred_fraction: float
    error_rate: float  # errors among the kept photos
    threshold: float
    kept: int


def risk_coverage(
    confidence: np.ndarray,
    correct: np.ndarray,
    coverages: Sequence[float] = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5),
) -> list[RiskCoverageRow]:
    """Error rate on the most confident photos, for each requested coverage."""
    confidence, correct = _paired_vectors(confidence, correct, "confidence", "correct")
    confidence = confidence.astype(np.float64)
    correct = correct.astype(bool)
    descending = np.sort(confidence)[::-1]
    rows = []
    for requested in coverages:
        if not 0.0 < requested <= 1.0:
            raise ConfigError(f"coverage must be within (0, 1], got {requested}")
        wanted = max(1, math.ceil(requested * len(confidence) - _COUNT_SLACK))
        threshold = descending[wanted - 1]
        kept = confidence >= threshold
        n_kept = int(kept.sum())
        rows.append(
            RiskCoverageRow(
                requested_coverage=float(requested),
                coverage=n_kept / len(confidence),
                referred_fraction=1.0 - n_kept / len(confidence),
                error_rate=float(1.0 - correct[kept].mean()),
                threshold=float(threshold),
                kept=n_kept,
            )
        )
    return rows


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class GroupRecall:
    count: int
    caught: int

    @property
    def recall(self) -> float:
        return self.caught / self.count


def recall_by_group(group_keys: Sequence[Iterable[str]], caught: np.ndarray) -> dict[str, GroupRecall]:
    """Recall per group, e.g. per tell type: a photo counts once in every group it belongs to.

    ``group_keys[i]`` are the groups of photo i (pass only the photos the recall is about,
    e.g. counterfeits); ``caught[i]`` whether it was caught. Keys come out sorted.
    """
    caught = np.asarray(caught, dtype=bool)
    if caught.ndim != 1 or len(group_keys) != len(caught):
        raise ConfigError(f"{len(group_keys)} group lists for {caught.shape} caught flags")
    totals: dict[str, list[int]] = {}
    for keys, was_caught in zip(group_keys, caught, strict=True):
        for key in set(keys):
            tally = totals.setdefault(key, [0, 0])
            tally[0] += 1
            tally[1] += int(was_caught)
    return {key: GroupRecall(*totals[key]) for key in sorted(totals)}


# --------------------------------------------------------------------------- bootstrap

Metric = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_ci(
    metric: Metric,
    y: np.ndarray,
    outputs: np.ndarray,
    groups: np.ndarray | Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(metric on all data, percentile CI low, CI high), resampling whole groups when given."""
    y, outputs = np.asarray(y), np.asarray(outputs)
    value = float(metric(y, outputs))
    replicates = [metric(y[rows], outputs[rows]) for rows in _resamples(len(y), groups, n_boot, seed)]
    low, high = _percentile_interval(replicates, confidence)
    return value, low, high


def bootstrap_delta(
    metric: Metric,
    y: np.ndarray,
    outputs_a: np.ndarray,
    outputs_b: np.ndarray,
    groups: np.ndarray | Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``metric(y, outputs_b) - metric(y, outputs_a)`` on the same photos.

    Returns (delta on all data, CI low, CI high). Each replicate draws cases with replacement
    and evaluates both models on the same draw, so the photo-to-photo variation common to
    both cancels. ``groups`` (case ids) make whole cases the unit of resampling: photos of
    one shipment are correlated, and resampling them one by one would give intervals that
    are too narrow. Replicates where the metric is NaN (e.g. no counterfeit drawn) are
    dropped. Deterministic for a given ``seed``.
    """
    y, outputs_a, outputs_b = np.asarray(y), np.asarray(outputs_a), np.asarray(outputs_b)
    if not len(y) == len(outputs_a) == len(outputs_b):
        raise ConfigError(f"y, outputs_a and outputs_b differ in length: {len(y)}, {len(outputs_a)}, {len(outputs_b)}")
    delta = float(metric(y, outputs_b) - metric(y, outputs_a))
    replicates = [
        metric(y[rows], outputs_b[rows]) - metric(y[rows], outputs_a[rows])
        for rows in _resamples(len(y), groups, n_boot, seed)
    ]
    low, high = _percentile_interval(replicates, confidence)
    return delta, low, high


def _resamples(n: int, groups: np.ndarray | Sequence[str] | None, n_boot: int, seed: int) -> Iterable[np.ndarray]:
    """Row indices of each bootstrap replicate; a row repeats as often as its group was drawn."""
    if n == 0:
        raise ConfigError("cannot bootstrap an empty evaluation set")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    if groups is None:
        group_of_row = np.arange(n)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ConfigError(f"groups has shape {groups.shape}, expected ({n},)")
        _, group_of_row = np.unique(groups, return_inverse=True)
    n_groups = int(group_of_row.max()) + 1
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    for _ in range(n_boot):
        draws = np.bincount(rng.integers(0, n_groups, size=n_groups), minlength=n_groups)
        yield np.repeat(rows, draws[group_of_row])


def _percentile_interval(replicates: Sequence[float], confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be within (0, 1), got {confidence}")
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- helpers


def _paired_vectors(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1 or len(a) != len(b):
        raise ConfigError(f"{name_a} and {name_b} must be 1-D of equal length, got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ConfigError(f"{name_a} and {name_b} are empty")
    return a, b


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def allowed_count(rate: float, n: int) -> int:
    """How many of ``n`` items a rate target allows: ``floor(rate * n)``, robust to rounding."""
    return math.floor(rate * n + _COUNT_SLACK)


def _check_rate(rate: float, name: str) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{name} must be within [0, 1], got {rate}")


def counterfeit_auc(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> float:
    """ROC-AUC of the counterfeit score from raw logits (NaN when one side is absent): what
    both trainers log per epoch."""
    is_counterfeit = np.array([is_counterfeit_class(classes[i]) for i in labels])
    if is_counterfeit.all() or not is_counterfeit.any():
        return float("nan")
    return float(roc_auc(counterfeit_score(softmax(logits), classes), is_counterfeit))


def validation_metrics(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """What both trainers log per epoch (and choose their best epoch from: `selection_key`).

    ``val_nll_calibrated`` is the NLL after the temperature that calibration will fit anyway,
    so an epoch is not punished for over-confidence that the temperature undoes.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if len(labels) == 0:
        return {"val_nll": float("nan"), "val_nll_calibrated": float("nan"), "val_temperature": 1.0,
                "val_acc": float("nan"), "val_counterfeit_auc": float("nan")}
    temperature = fit_temperature(logits, labels)
    return {
        "val_nll": negative_log_likelihood(logits, labels),
        "val_nll_calibrated": negative_log_likelihood(logits, labels, temperature),
        "val_temperature": temperature,
        "val_acc": float(np.mean(logits.argmax(1) == labels)),
        "val_counterfeit_auc": counterfeit_auc(logits, labels, classes),
    }


def selection_key(metrics: Mapping[str, float]) -> tuple[float, float]:
    """What both trainers choose their best epoch by; larger is better.

    The counterfeit ROC-AUC on validation first: calibration is fitted after training and
    the operating point is chosen on the calibrated scores, so what the weights must bring
    is the ranking. Any NLL, raw or temperature-scaled, also weighs the product classes and
    the softness that label smoothing trains in; choosing by it kept epochs that ranked
    counterfeits worse on another seed (README, Measured: "Which epoch to keep"). AUC is
    compared to three decimals, since on a few hundred validation photos smaller
    differences are noise; the calibrated NLL breaks those ties, and decides alone where
    validation holds one side only (no AUC).
    """
    auc, nll = metrics["val_counterfeit_auc"], metrics["val_nll_calibrated"]
    return (round(auc, 3) if math.isfinite(auc) else -math.inf, -nll if math.isfinite(nll) else -math.inf)
