"""Does a photo look like anything the model was trained on? Out-of-distribution scores, numpy only.

A classifier always picks one of its classes, even for a cat or an empty box. The unknown
detector gives every photo a score (higher = less like the training photos); above the
detector's threshold the photo is *unknown* and goes to REFER whatever the classifier says.

Methods (the fit lives in longteng.training.unknown_fit):

* ``mahalanobis`` (the default): distance of the pooled ``embedding`` to the nearest class
  mean under one shared, shrunk covariance. The covariance is stored as its top ``r``
  principal directions plus one variance for everything outside them (probabilistic PCA),
  so the parameters fit in the model's metadata and a photo whose features leave the
  training subspace still scores high through the residual term.
* ``energy``: the negative log-sum-exp of the logits (Liu et al. 2020); needs no
  parameters and serves as the baseline the Mahalanobis score is measured against.

Arrays in the parameters are base64 float32 (``encode_array``), because metadata values
are strings and JSON numbers would triple the size.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from longteng.errors import CheckpointError
from longteng.inference.metadata import UnknownDetector

MAHALANOBIS = "mahalanobis"
ENERGY = "energy"
METHODS = (MAHALANOBIS, ENERGY)


def unknown_scores(outputs: Mapping[str, np.ndarray], detector: UnknownDetector) -> np.ndarray:
    """(N,) float64 scores from the model's named outputs; higher = more unknown."""
    if detector.method == MAHALANOBIS:
        return mahalanobis_distances(_output(outputs, "embedding"), detector.parameters).min(axis=1)
    if detector.method == ENERGY:
        return energy_scores(_output(outputs, "logits"), detector.parameters)
    raise CheckpointError(f"unknown-object method {detector.method!r} is not supported; known: {', '.join(METHODS)}")


def is_unknown(outputs: Mapping[str, np.ndarray], detector: UnknownDetector | None) -> np.ndarray:
    """(N,) bool: True where the photo scores above the detector's threshold.

    A model exported without a detector flags nothing, so it still gives verdicts.
    """
    if detector is None:
        return np.zeros(len(_output(outputs, "logits")), dtype=bool)
    return unknown_scores(outputs, detector) > detector.threshold


def mahalanobis_distances(
    embedding: np.ndarray, parameters: Mapping[str, Any], extra_means: np.ndarray | None = None
) -> np.ndarray:
    """(N, K [+ R]) squared Mahalanobis distances to each class mean (then to each of
    ``extra_means``), divided by the feature count.

    With x = e - mean_k, basis V (F, r), variances l (r,) and residual variance s:
    d2 = sum_i (V_i . x)^2 / l_i + (|x|^2 - |V^T x|^2) / s.
    """
    try:
        means, basis, variances, residual_variance = _mahalanobis_parameters(parameters)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"mahalanobis detector parameters are incomplete ({exc})") from None
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[1] != means.shape[1]:
        raise CheckpointError(f"embedding has shape {embedding.shape}, the detector expects (N, {means.shape[1]})")
    if extra_means is not None:
        means = np.concatenate([means, np.asarray(extra_means, np.float32).reshape(-1, means.shape[1])])
    means, basis, variances = (a.astype(np.float64) for a in (means, basis, variances))
    # Differences per (photo, class) in the principal subspace and in full, without building
    # the (N, K, F) tensor: |e - m|^2 = |e|^2 - 2 e.m + |m|^2.
    projected = (embedding @ basis)[:, None, :] - (means @ basis)[None, :, :]  # (N, K, r)
    squared = (
        np.sum(embedding**2, axis=1)[:, None] - 2.0 * embedding @ means.T + np.sum(means**2, axis=1)[None, :]
    )  # (N, K)
    in_subspace = np.sum(projected**2, axis=2)
    residual = np.maximum(squared - in_subspace, 0.0)  # rounding can push it a hair below zero
    distance = np.sum(projected**2 / variances, axis=2) + residual / residual_variance
    return distance / means.shape[1]


def energy_scores(logits: np.ndarray, parameters: Mapping[str, Any]) -> np.ndarray:
    """-T * logsumexp(logits / T): low for photos the classifier has a confident answer for."""
    temperature = float(parameters.get("temperature", 1.0))
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    peak = scaled.max(axis=1, keepdims=True)
    return -temperature * (peak[:, 0] + np.log(np.exp(scaled - peak).sum(axis=1)))


def encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}


def decode_array(encoded: Mapping[str, Any]) -> np.ndarray:
    if encoded.get("dtype") != "float32":
        raise ValueError(f"array dtype {encoded.get('dtype')!r} unsupported (float32 only)")
    flat = np.frombuffer(base64.b64decode(encoded["data"], validate=True), dtype="<f4")
    return flat.reshape([int(n) for n in encoded["shape"]])


def _mahalanobis_parameters(parameters: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(means (K, F), basis (F, r), variances (r,), residual variance); KeyError, TypeError or
    ValueError when they are missing or malformed."""
    return (
        decode_array(parameters["means"]), decode_array(parameters["basis"]), decode_array(parameters["variances"]),
        float(parameters["residual_variance"]),
    )


def check_detector(detector: UnknownDetector, embedding_size: int | None, source: str) -> None:
    """Refuse a detector whose parameters would silently switch it off or blame every photo:
    a NaN or infinite threshold (every comparison False), non-finite or non-positive variances,
    arrays whose shapes do not fit each other or the graph's embedding."""
    field = f"{source}: metadata longteng.unknown"
    if detector.method not in METHODS:
        raise CheckpointError(f"{field}.method {detector.method!r} unknown; allowed: {', '.join(METHODS)}")
    if not np.isfinite(detector.threshold):
        raise CheckpointError(f"{field}.threshold must be a finite number, got {detector.threshold!r}")
    parameters = detector.parameters
    try:
        if detector.method == ENERGY:
            temperature = float(parameters.get("temperature", 1.0))
            if not (np.isfinite(temperature) and temperature > 0):
                raise ValueError(f"temperature must be finite and positive, got {temperature!r}")
            return
        means, basis, variances, residual_variance = _mahalanobis_parameters(parameters)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{field}.parameters invalid ({exc})") from None
    features = means.shape[1] if means.ndim == 2 else -1
    if features < 1 or basis.ndim != 2 or basis.shape[0] != features or variances.shape != (basis.shape[1],):
        raise CheckpointError(
            f"{field}.parameters: shapes do not fit (means {means.shape}, basis {basis.shape}, variances {variances.shape})"
        )
    if embedding_size is not None and features != embedding_size:
        raise CheckpointError(f"{field}.parameters: means have {features} features, the graph's embedding {embedding_size}")
    if not all(np.isfinite(a).all() for a in (means, basis, variances)):
        raise CheckpointError(f"{field}.parameters: arrays hold NaN or infinite values")
    if not (np.all(variances > 0) and np.isfinite(residual_variance) and residual_variance > 0):
        raise CheckpointError(f"{field}.parameters: variances must be finite and positive")


def _output(outputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in outputs:
        raise CheckpointError(f"the unknown-object score needs the model output {name!r}; got {', '.join(outputs)}")
    return outputs[name]
