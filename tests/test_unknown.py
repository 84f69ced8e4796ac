"""The unknown-object score: its arithmetic, its fit, and unrelated photos sent to REFER."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from longteng.decision import REFER, decide
from longteng.inference.metadata import ModelMetadata, UnknownDetector
from longteng.inference.session import OnnxModel
from longteng.inference.unknown import decode_array, encode_array, energy_scores, is_unknown, unknown_scores
from longteng.preprocess import load_resized
from longteng.training.unknown_fit import UnknownFitConfig, fit_mahalanobis, fit_unknown_detector, unknown_roc_auc
from longteng.training.unrelated_photos import write_skimage_photos, write_unrelated_photos


_SCALES = np.linspace(0.3, 3.0, 24)


def _clusters(rng: np.random.Generator, n_per_class: int, centres: np.ndarray | None = None):
    """Three Gaussian classes sharing one anisotropic covariance: (points, labels, class centres)."""
    centres = rng.normal(0, 4, (3, len(_SCALES))) if centres is None else centres
    labels = np.repeat(np.arange(3), n_per_class)
    points = centres[labels] + rng.normal(0, 1, (len(labels), len(_SCALES))) * _SCALES
    return points, labels, centres


def test_low_rank_mahalanobis_equals_the_full_precision_matrix_formula():
    rng = np.random.default_rng(0)
    points, labels, _ = _clusters(rng, 40)
    parameters = fit_mahalanobis(points, labels, rank=5, shrinkage=0.2)
    means, basis = decode_array(parameters["means"]).astype(np.float64), decode_array(parameters["basis"]).astype(np.float64)
    variances, residual = decode_array(parameters["variances"]).astype(np.float64), parameters["residual_variance"]
    # The precision matrix the stored parameters stand for, built in full.
    precision = basis @ np.diag(1 / variances) @ basis.T + (np.eye(len(basis)) - basis @ basis.T) / residual
    queries = rng.normal(0, 5, (7, points.shape[1]))
    expected = np.array([
        min((q - m) @ precision @ (q - m) for m in means) for q in queries
    ]) / points.shape[1]
    scores = unknown_scores({"embedding": queries}, UnknownDetector("mahalanobis", 0.0, parameters))
    np.testing.assert_allclose(scores, expected, rtol=1e-4)


def test_points_far_from_every_class_score_higher_and_the_threshold_keeps_its_percentile():
    rng = np.random.default_rng(1)
    train, train_labels, centres = _clusters(rng, 200)
    val, _, _ = _clusters(rng, 200, centres)
    fresh, _, _ = _clusters(rng, 400, centres)
    far = train.mean(axis=0) + rng.normal(0, 12, (100, train.shape[1]))
    detector = fit_unknown_detector(
        {"embedding": train}, train_labels, {"embedding": val}, UnknownFitConfig(rank=8, percentile=99.0)
    )
    # The threshold is the 99th percentile of val: new photos of the same kind cross it about 1% of the time.
    assert is_unknown({"embedding": fresh, "logits": fresh[:, :3]}, detector).mean() < 0.03
    assert is_unknown({"embedding": far, "logits": far[:, :3]}, detector).mean() > 0.95
    auc = unknown_roc_auc(unknown_scores({"embedding": fresh}, detector), unknown_scores({"embedding": far}, detector))
    assert auc > 0.99


def test_energy_is_minus_logsumexp_of_the_logits():
    logits = np.array([[0.0, 0.0], [10.0, -10.0], [1000.0, 1000.0]])
    expected = -np.array([np.log(2.0), 10.0 + np.log1p(np.exp(-20.0)), 1000.0 + np.log(2.0)])
    np.testing.assert_allclose(energy_scores(logits, {}), expected, rtol=1e-12)


def test_a_model_without_detector_flags_nothing():
    assert not is_unknown({"logits": np.zeros((4, 3))}, None).any()
    assert is_unknown({"logits": np.zeros((4, 3))}, None).shape == (4,)


def test_arrays_survive_the_metadata_round_trip(tiny_onnx_model):
    metadata = OnnxModel(tiny_onnx_model).metadata
    rng = np.random.default_rng(3)
    array = rng.normal(size=(5, 3)).astype(np.float32)
    assert np.array_equal(decode_array(encode_array(array)), array)
    detector = UnknownDetector("mahalanobis", 1.5, {"means": encode_array(array)})
    props = ModelMetadata(**{**metadata.__dict__, "unknown": detector}).to_props()
    restored = ModelMetadata.from_props(props).unknown
    assert restored.threshold == 1.5 and np.array_equal(decode_array(restored.parameters["means"]), array)


def test_the_exported_detector_is_fitted_and_measured(tiny_onnx_model):
    metadata = OnnxModel(tiny_onnx_model).metadata
    assert metadata.unknown is not None and metadata.unknown.method == "mahalanobis"
    summary = metadata.provenance["unknown"]
    assert summary["n_known"] > 0 and summary["n_unrelated"] > 0
    assert summary["roc_auc"] > 0.9  # the tiny dataset's grey boxes look nothing like the unrelated photos
    assert summary["known_flagged_rate"] <= 0.1


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_an_unrelated_photo_is_sent_to_refer_as_unknown(tiny_onnx_model, tmp_path, name):
    model = OnnxModel(tiny_onnx_model)
    photo = next(p for p in write_skimage_photos(tmp_path) if p.stem == name)
    outputs = model.run(load_resized(photo, model.metadata.preprocess)[None])
    unknown = is_unknown(outputs, model.metadata.unknown)
    assert unknown.tolist() == [True]
    decision = decide(outputs["probabilities"], model.metadata.class_names, model.metadata.operating_point, unknown)[0]
    assert decision.verdict == REFER and decision.refer_reason == "unknown"


def test_in_distribution_photos_are_mostly_not_unknown(tiny_onnx_model, tiny_dataset):
    model = OnnxModel(tiny_onnx_model)
    photos = sorted(tiny_dataset.glob("*/*/test_*.png"))
    pixels = np.stack([load_resized(path, model.metadata.preprocess) for path in photos])
    flagged = is_unknown(model.run(pixels), model.metadata.unknown)
    assert flagged.mean() <= 0.1, [str(p) for p, f in zip(photos, flagged) if f]


def test_every_kind_of_unrelated_photo_is_written_and_readable(tmp_path):
    photos = write_unrelated_photos(tmp_path, per_kind=2, seed=5)
    kinds = {photo.kind for photo in photos}
    assert kinds == {"photo", "noise", "flat", "gradient", "document", "cardboard"}
    from longteng.preprocess import PreprocessSpec

    spec = PreprocessSpec(input_size=32)
    assert all(load_resized(photo.path, spec).shape == (32, 32, 3) for photo in photos)


def test_the_runtime_modules_do_not_import_torch():
    code = "import longteng.inference.session, longteng.inference.unknown, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
