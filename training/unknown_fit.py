"""Fit the unknown-object detector on training embeddings and set its threshold on validation.

Numpy only; the scores themselves are computed by longteng.inference.unknown, the same code
the runtime runs, so the threshold chosen here is the one the officer's laptop applies.

Threshold: the ``percentile`` (default 99th) of the scores of the in-distribution validation
photos, i.e. about 1% of ordinary inspection photos are sent to REFER as "unknown". A lower
percentile catches more odd photos at the price of more referrals; the validation split is
what the operating point was chosen on too, and test stays untouched for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longteng.errors import ConfigError, DatasetError
from longteng.inference.metadata import UnknownDetector
from longteng.inference.unknown import ENERGY, MAHALANOBIS, METHODS, encode_array, unknown_scores
from longteng.training.metrics import roc_auc


@dataclass(frozen=True)
class UnknownFitConfig:
    method: str = MAHALANOBIS
    # Principal directions kept for the Mahalanobis score; the rest share one variance.
    rank: int = 64
    # Ledoit-Wolf-style pull of the covariance towards a multiple of the identity: a few
    # hundred training photos cannot estimate 1280 x 1280 covariances on their own.
    shrinkage: float = 0.1
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown-object method {self.method!r} unknown; allowed: {', '.join(METHODS)}")
        if self.rank < 1:
            raise ConfigError(f"rank must be at least 1, got {self.rank}")
        if not 0.0 < self.shrinkage <= 1.0:
            raise ConfigError(f"shrinkage must lie in (0, 1], got {self.shrinkage}")
        if not 50.0 <= self.percentile <= 100.0:
            raise ConfigError(f"percentile must lie in [50, 100], got {self.percentile}")


def fit_mahalanobis(embeddings: np.ndarray, labels: np.ndarray, rank: int, shrinkage: float) -> dict[str, Any]:
    """Class means and a shared shrunk covariance, stored as top-``rank`` directions + a residual variance."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(embeddings) <= len(classes):
        raise DatasetError(f"the unknown-object fit needs more photos than classes, got {len(embeddings)}")
    means = np.stack([embeddings[labels == k].mean(axis=0) for k in classes])
    centred = embeddings - means[np.searchsorted(classes, labels)]
    covariance = centred.T @ centred / len(embeddings)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 0.0), eigenvectors[:, order]
    average = max(float(eigenvalues.mean()), 1e-12)
    shrunk = (1.0 - shrinkage) * eigenvalues + shrinkage * average
    # Beyond N - K directions the sample covariance is exactly zero: nothing more to keep.
    kept = max(1, min(rank, len(embeddings) - len(classes), embeddings.shape[1] - 1))
    return {
        "means": encode_array(means),
        "basis": encode_array(eigenvectors[:, :kept]),
        "variances": encode_array(shrunk[:kept]),
        "residual_variance": float(shrunk[kept:].mean()),
        "rank": kept,
        "shrinkage": shrinkage,
        "n_train": int(len(embeddings)),
    }


def threshold_at_percentile(scores: np.ndarray, percentile: float) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise DatasetError("the unknown-object threshold needs in-distribution validation photos")
    return float(np.percentile(scores, percentile))


def fit_unknown_detector(
    train_outputs: Mapping[str, np.ndarray],
    train_labels: np.ndarray,
    val_outputs: Mapping[str, np.ndarray],
    config: UnknownFitConfig = UnknownFitConfig(),
) -> UnknownDetector:
    """Fit ``config.method`` on training outputs; threshold at the val percentile."""
    if config.method == MAHALANOBIS:
        parameters = fit_mahalanobis(train_outputs["embedding"], train_labels, config.rank, config.shrinkage)
    else:
        parameters = {"temperature": 1.0}
    parameters["percentile"] = config.percentile
    unthresholded = UnknownDetector(config.method, float("inf"), parameters)
    threshold = threshold_at_percentile(unknown_scores(val_outputs, unthresholded), config.percentile)
    return UnknownDetector(config.method, threshold, parameters)


def baseline_detectors(detector: UnknownDetector) -> list[UnknownDetector]:
    """Detectors to compare ``detector`` with; energy needs no fit, so it is always there."""
    return [] if detector.method == ENERGY else [UnknownDetector(ENERGY, float("inf"), {"temperature": 1.0})]


def unknown_evaluation(
    detector: UnknownDetector,
    known_outputs: Mapping[str, np.ndarray],
    unrelated_outputs: Mapping[str, np.ndarray],
    unrelated_kinds: Sequence[str],
) -> dict[str, Any]:
    """ROC-AUC of unrelated photos vs in-distribution photos, and who crosses the threshold.

    ``known_outputs`` should come from photos the detector was not fitted on (test split).
    """
    known = unknown_scores(known_outputs, detector)
    unrelated = unknown_scores(unrelated_outputs, detector)
    kinds = np.asarray(unrelated_kinds)
    flagged = unrelated > detector.threshold
    return {
        "method": detector.method,
        "threshold": detector.threshold,
        "roc_auc": unknown_roc_auc(known, unrelated),
        "n_known": int(len(known)),
        "n_unrelated": int(len(unrelated)),
        "known_flagged_rate": float(np.mean(known > detector.threshold)) if len(known) else None,
        "unrelated_flagged_rate": float(np.mean(flagged)) if len(unrelated) else None,
        "unrelated_flagged_by_kind": {
            str(kind): float(np.mean(flagged[kinds == kind])) for kind in sorted(set(kinds.tolist()))
        },
        "baselines_roc_auc": {
            baseline.method: unknown_roc_auc(unknown_scores(known_outputs, baseline), unknown_scores(unrelated_outputs, baseline))
            for baseline in baseline_detectors(detector)
        },
    }


def unknown_roc_auc(known_scores: np.ndarray, unrelated_scores: np.ndarray) -> float:
    """Probability that an unrelated photo scores above an in-distribution one."""
    scores = np.concatenate([np.asarray(known_scores, dtype=np.float64), np.asarray(unrelated_scores, dtype=np.float64)])
    is_unrelated = np.concatenate([np.zeros(len(known_scores), bool), np.ones(len(unrelated_scores), bool)])
    return roc_auc(scores, is_unrelated)
