"""Calibration, fitted on validation data: a temperature, then the counterfeit score's Platt scaling.

Temperature scaling: one scalar T so that softmax(logits / T) gives honest probabilities.

Networks trained with cross-entropy are usually over-confident (T > 1 fixes that). T is fitted
on validation logits by minimising the negative log-likelihood with a golden-section search
over log T, written here in numpy so the runtime needs no scipy. The NLL is convex in 1/T,
hence unimodal in log T, which is what golden-section search needs.
"""

from __future__ import annotations

import math

import numpy as np

from longteng.decision import ScoreCalibration, counterfeit_score, is_counterfeit_class, softmax
from longteng.errors import ConfigError

DEFAULT_TEMPERATURE_BOUNDS = (0.05, 20.0)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / T)[label], computed from logits so it never takes log(0)."""
    logits, labels = _check_inputs(logits, labels)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature}")
    return _nll(logits, labels, temperature)


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, float] = DEFAULT_TEMPERATURE_BOUNDS,
    tolerance: float = 1e-6,
) -> float:
    """The temperature within ``bounds`` that minimises the NLL of ``labels``; deterministic.

    ``tolerance`` is on log T. When the optimum lies outside the bounds the nearer bound is
    returned: T at the lower bound means the validation logits separate the classes almost
    perfectly (then T carries little information; look at the validation set size).
    """
    logits, labels = _check_inputs(logits, labels)
    low_t, high_t = bounds
    if not (0 < low_t < high_t and math.isfinite(high_t)):
        raise ConfigError(f"temperature bounds must satisfy 0 < low < high, got {bounds}")
    if tolerance <= 0:
        raise ConfigError(f"tolerance must be positive, got {tolerance}")

    def objective(log_t: float) -> float:
        return _nll(logits, labels, math.exp(log_t))

    low, high = math.log(low_t), math.log(high_t)
    inner_low, inner_high = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    value_low, value_high = objective(inner_low), objective(inner_high)
    while high - low > tolerance:
        if value_low <= value_high:
            high, inner_high, value_high = inner_high, inner_low, value_low
            inner_low = high - _GOLDEN * (high - low)
            value_low = objective(inner_low)
        else:
            low, inner_low, value_low = inner_low, inner_high, value_high
            inner_high = low + _GOLDEN * (high - low)
            value_high = objective(inner_high)
    # The search never evaluates the bounds themselves; compare them so an optimum at a bound is exact.
    candidates = [math.log(low_t), (low + high) / 2, math.log(high_t)]
    best = min(candidates, key=objective)
    return float(math.exp(best))


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    row_max = scaled.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(scaled - row_max).sum(axis=1)) + row_max[:, 0]
    return float(np.mean(log_normaliser - scaled[np.arange(len(labels)), labels]))


def _check_inputs(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or len(labels) == 0:
        raise ConfigError(f"need (N, C) logits and (N,) labels with N > 0, got {logits.shape} and {labels.shape}")
    if not np.all(np.isfinite(logits)):
        raise ConfigError("logits must be finite")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ConfigError(f"labels must be class indices in [0, {logits.shape[1]})")
    return logits, labels.astype(np.int64)


def fit_score_calibration(scores: np.ndarray, is_counterfeit: np.ndarray, max_steps: int = 100) -> ScoreCalibration:
    """Platt scaling of temperature-scaled counterfeit scores: the (slope, bias) minimising the
    NLL of sigmoid(slope * logit(s) + bias), by Newton's method (the NLL is convex in them).

    The identity when the fit is not usable: one class only, or a slope the ranking forbids
    (not positive) or a fit that did not settle; the scores are then left as they are.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(is_counterfeit, dtype=np.float64)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ConfigError(f"need matching 1-d scores and labels, got {scores.shape} and {positive.shape}")
    if len(scores) == 0 or positive.min() == positive.max():
        return ScoreCalibration()
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    x = np.log(clipped) - np.log1p(-clipped)
    slope, bias = 1.0, 0.0
    for _ in range(max_steps):
        p = 0.5 * (1.0 + np.tanh(0.5 * (slope * x + bias)))  # the logistic, without overflow on separable scores
        gradient = np.array([np.sum((p - positive) * x), np.sum(p - positive)])
        weight = p * (1.0 - p) + 1e-12
        hessian = np.array([[np.sum(weight * x * x), np.sum(weight * x)], [np.sum(weight * x), np.sum(weight)]])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        slope, bias = slope - float(step[0]), bias - float(step[1])
        if not (math.isfinite(slope) and math.isfinite(bias)):
            return ScoreCalibration()
        if float(np.abs(step).max()) < 1e-9:
            break
    else:
        return ScoreCalibration()
    try:
        return ScoreCalibration(slope, bias)
    except ConfigError:
        return ScoreCalibration()


def fit_calibration(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> tuple[float, ScoreCalibration]:
    """Both steps on validation logits: the temperature, then the counterfeit score's Platt scaling."""
    temperature = fit_temperature(logits, labels)
    positive = np.array([is_counterfeit_class(class_names[i]) for i in labels], dtype=bool)
    scores = counterfeit_score(softmax(logits, temperature), class_names)
    return temperature, fit_score_calibration(scores, positive)
